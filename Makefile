# seaice: `make demo` runs the pipeline on generated data, `make test` runs every test.
# Both create .venv when it is missing (torch and torchvision pinned in the same pip command).
PYTHON ?= python3.11
VENV := .venv
PY := $(VENV)/bin/python
TORCH_PINS := torch==2.14.1 torchvision==0.29.1
STAMP := $(VENV)/.installed
export HF_HUB_OFFLINE := 1
export PYTHONHASHSEED := 0

.PHONY: venv system-deps demo test test-fast bench clean

venv: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q $(TORCH_PINS) -e '.[test]'
	$(PY) -m ipykernel install --sys-prefix --name python3 >/dev/null
	touch $(STAMP)

# Debian tools the tests use: pdftoppm renders the paper figures' PDFs, headless Chromium opens the
# executed notebooks' HTML. Installed with apt-get when missing (as root, as in CI).
SYSTEM_TOOLS := pdftoppm:poppler-utils chromium:chromium
system-deps:
	@missing=""; for pair in $(SYSTEM_TOOLS); do command -v $${pair%%:*} >/dev/null || missing="$$missing $${pair##*:}"; done; \
	if [ -n "$$missing" ]; then \
		if [ "$$(id -u)" != 0 ]; then echo "make: the tests need the Debian packages$$missing (apt-get install$$missing as root)" >&2; exit 1; fi; \
		echo "installing$$missing with apt-get"; \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing >/dev/null; \
	fi

DEMO := runs/demo
DEMO_MODELS := unet tsvit_v1 tsvit_v2 tsvit_v3
DEMO_STEPS := 150
PAPERMILL := $(PY) -m papermill --cwd notebooks --no-progress-bar

demo: $(STAMP)
	mkdir -p $(DEMO)
	$(PAPERMILL) notebooks/01_download.ipynb $(DEMO)/01_download.ipynb -p dest ../$(DEMO)/download
	$(VENV)/bin/seaice synthetic --out $(DEMO)/scenes --regions 3 --scenes-per-region 4 --size 800 800 --seed 0 --raw
	$(PAPERMILL) notebooks/02_explore.ipynb $(DEMO)/02_explore.ipynb \
		-p data_dir ../$(DEMO)/scenes -p out_dir ../$(DEMO)/explore
	$(PAPERMILL) notebooks/03_patches.ipynb $(DEMO)/03_patches.ipynb -p scenes_dir ../$(DEMO)/scenes \
		-p store ../$(DEMO)/patches.zarr -p out_dir ../$(DEMO)/patches -p patch 32 -p downsample 4
	for model in $(DEMO_MODELS); do \
		$(PAPERMILL) notebooks/04_train.ipynb $(DEMO)/04_train_$$model.ipynb -p model $$model \
			-p store ../$(DEMO)/patches.zarr -p out_dir ../$(DEMO)/train/$$model \
			-p steps $(DEMO_STEPS) -p steps_per_epoch 50 -p model_size small -p batch_size 16 || exit 1; \
	done
	$(PAPERMILL) notebooks/05_evaluate.ipynb $(DEMO)/05_evaluate.ipynb -p runs_dir ../$(DEMO)/train \
		-p scenes_dir ../$(DEMO)/scenes -p out_dir ../$(DEMO)/evaluate
	$(PAPERMILL) notebooks/06_explain.ipynb $(DEMO)/06_explain.ipynb -p run_dir ../$(DEMO)/train/tsvit_v3 \
		-p scenes_dir ../$(DEMO)/scenes -p out_dir ../$(DEMO)/explain
	@echo "demo done: executed notebooks and their outputs are under $(DEMO)/"
	@echo "validation scores (%) of the four models, official AutoICE metric:"
	@cat $(DEMO)/evaluate/comparison.md; echo

test: $(STAMP) system-deps
	$(PY) -m pytest -q tests -p no:cacheprovider

test-fast: $(STAMP) system-deps
	$(PY) -m pytest -q tests -m 'not slow'

bench: $(STAMP)
	$(PY) -m benchmarks

clean:
	rm -rf runs .pytest_cache
