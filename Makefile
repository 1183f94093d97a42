# seaice: `make demo` runs the pipeline on generated data, `make test` runs every test.
# Both create .venv when it is missing (torch and torchvision pinned in the same pip command).
PYTHON ?= python3.11
VENV := .venv
PY := $(VENV)/bin/python
TORCH_PINS := torch==2.14.1 torchvision==0.29.1
STAMP := $(VENV)/.installed
export HF_HUB_OFFLINE := 1
export PYTHONHASHSEED := 0

.PHONY: venv demo test test-fast bench clean

venv: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q $(TORCH_PINS) -e '.[test]'
	$(PY) -m ipykernel install --sys-prefix --name python3 >/dev/null
	touch $(STAMP)

DEMO := runs/demo
PAPERMILL := $(PY) -m papermill --cwd notebooks --no-progress-bar

demo: $(STAMP)
	mkdir -p $(DEMO)
	$(PAPERMILL) notebooks/01_download.ipynb $(DEMO)/01_download.ipynb -p dest ../$(DEMO)/download
	$(PY) -m seaice_lib.synthetic --out $(DEMO)/scenes --regions 3 --scenes-per-region 4 --size 800 800 --seed 0 --raw
	$(PAPERMILL) notebooks/02_explore.ipynb $(DEMO)/02_explore.ipynb \
		-p data_dir ../$(DEMO)/scenes -p out_dir ../$(DEMO)/explore
	$(PAPERMILL) notebooks/03_patches.ipynb $(DEMO)/03_patches.ipynb -p scenes_dir ../$(DEMO)/scenes \
		-p store ../$(DEMO)/patches.zarr -p out_dir ../$(DEMO)/patches -p patch 128 -p downsample 2
	@echo "demo done: executed notebooks and their outputs are under $(DEMO)/"

test: $(STAMP)
	$(PY) -m pytest -q tests notebooks --nbval-lax -p no:cacheprovider

test-fast: $(STAMP)
	$(PY) -m pytest -q tests -m 'not slow'

bench: $(STAMP)
	$(PY) -m benchmarks

clean:
	rm -rf runs .pytest_cache
