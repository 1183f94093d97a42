# seaice: `make demo` runs the pipeline on generated data, `make test` runs every test.
# Both create .venv when it is missing (torch and torchvision pinned in the same pip command).
# the first Python >= 3.11 on PATH (or PYTHON=/path/to/python3.x)
PYTHON ?= $(shell for p in python3.13 python3.12 python3.11 python3; do \
	command -v $$p >/dev/null && $$p -c 'import sys; sys.exit(sys.version_info < (3, 11))' 2>/dev/null && { echo $$p; break; }; done)
VENV := .venv
PY := $(VENV)/bin/python
TORCH_PINS := torch==2.14.1 torchvision==0.29.1
STAMP := $(VENV)/.installed
export HF_HUB_OFFLINE := 1
export PYTHONHASHSEED := 0

.PHONY: venv system-deps slurm-deps demo lint test test-slurm test-fast bench lab clean

KERNEL_SPEC := $(VENV)/share/jupyter/kernels/seaice/kernel.json  # the kernel the notebooks declare
venv: $(STAMP) $(KERNEL_SPEC)

$(STAMP): pyproject.toml
	@test -x $(PY) || test -n "$(PYTHON)" || { echo "make: no Python >= 3.11 on PATH; give one: make PYTHON=/path/to/python3.11 ..." >&2; exit 2; }
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q $(TORCH_PINS) -e '.[full,test]'
	touch $(STAMP)

$(KERNEL_SPEC): $(STAMP)
	$(PY) -m ipykernel install --sys-prefix --name seaice --display-name "Python (seaice)" >/dev/null

# Debian packages the tests use, installed with apt-get when missing (as root, as in CI):
# pdftoppm renders the paper figures' PDFs, headless Chromium opens the executed notebooks' HTML,
# gdal-bin's gdalinfo and ogrinfo open the chart maps and SIGRID-3 polygons (tests/test_charts_maps.py),
# slurm-wlm and munge make the single-node SLURM the SLURM tests bring up. Without root, the tests
# run without what is missing: one line names the packages and the tests left out, which skip
# saying so (SEAICE_MISSING_TOOLS, read by tests/rendering.py); CI runs as root and leaves out none.
SYSTEM_TOOLS := pdftoppm:poppler-utils chromium:chromium gdalinfo:gdal-bin ogrinfo:gdal-bin
SLURM_TOOLS := slurmctld:slurm-wlm slurmd:slurm-wlm munged:munge
missing_packages = $(strip $(foreach pair,$(1),$(if $(shell command -v $(word 1,$(subst :, ,$(pair)))),,$(word 2,$(subst :, ,$(pair))))))
missing_tools = $(strip $(foreach pair,$(1),$(if $(shell command -v $(word 1,$(subst :, ,$(pair)))),,$(word 1,$(subst :, ,$(pair))))))
IS_ROOT := $(shell [ "$$(id -u)" = 0 ] && echo yes)
define apt_install
	@missing="$(sort $(call missing_packages,$(1)))"; \
	if [ -n "$$missing" ] && [ "$(IS_ROOT)" = yes ]; then \
		echo "installing $$missing with apt-get"; \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing >/dev/null; \
	fi
endef
system-deps:
	$(call apt_install,$(SYSTEM_TOOLS))
slurm-deps:
	$(call apt_install,$(SLURM_TOOLS))
# after system-deps: the tools still missing (not root), which their tests then skip by name (no commas in
# the note: they would split $(if ...))
MISSING_TOOLS = $(call missing_tools,$(SYSTEM_TOOLS))
MISSING_NOTE = $(if $(MISSING_TOOLS),@echo "make: not root so without the Debian packages $(sort $(call missing_packages,$(SYSTEM_TOOLS))): the tests that render figures or notebook pages or open chart maps with GDAL tools are left out (skipped; pytest -rs names them)")

DEMO := runs/demo
DEMO_MODELS := unet tsvit_v1 tsvit_v2 tsvit_v3
DEMO_STEPS := 150
PAPERMILL := $(VENV)/bin/seaice notebook --cwd notebooks  # papermill, parameter names and types checked

demo: venv
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
	$(PAPERMILL) notebooks/07_paper_figures.ipynb $(DEMO)/07_paper_figures.ipynb -p runs_dir ../$(DEMO)/train \
		-p scenes_dir ../$(DEMO)/scenes -p explain_dirs ../$(DEMO)/explain \
		$(if $(wildcard runs/bench),-p bench_dir ../runs/bench) -p out_dir ../$(DEMO)/figures
	@echo "demo done: executed notebooks and their outputs are under $(DEMO)/"
	@echo "validation scores (%) of the four models, official AutoICE metric:"
	@cat $(DEMO)/evaluate/comparison.md; echo

# pyflakes, pycodestyle and import order, then mypy on the library (settings in pyproject.toml)
lint: venv
	$(PY) -m ruff check seaice_lib tests benchmarks
	$(PY) -m mypy seaice_lib

test: venv system-deps lint
	$(MISSING_NOTE)
	SEAICE_MISSING_TOOLS="$(MISSING_TOOLS)" $(PY) -m pytest -q tests -p no:cacheprovider -m "not slurm"
	$(MAKE) --no-print-directory test-slurm

# the SLURM jobs on a single-node SLURM the tests start on this machine (root: it runs munged and
# slurmd); without root it says so in one line and leaves them out
test-slurm: venv slurm-deps
	@if [ "$(IS_ROOT)" != yes ]; then \
		echo "make: not root: the SLURM tests (a local SLURM needs root and slurm-wlm, munge) are left out"; \
	else $(PY) -m pytest -q tests -p no:cacheprovider -m slurm; fi

test-fast: venv system-deps
	$(MISSING_NOTE)
	SEAICE_MISSING_TOOLS="$(MISSING_TOOLS)" $(PY) -m pytest -q tests -m 'not slow and not slurm'

# JupyterLab on the project's kernel and notebooks/ (headless: open the printed URL; LAB_TOKEN
# empty lets Jupyter draw a token)
LAB_PORT ?= 8888
LAB_TOKEN ?=
lab: venv
	$(VENV)/bin/jupyter lab --no-browser --ServerApp.root_dir=notebooks --ServerApp.port=$(LAB_PORT) \
		--ServerApp.port_retries=0 --ServerApp.allow_root=True $(if $(LAB_TOKEN),--IdentityProvider.token=$(LAB_TOKEN))

bench: venv
	$(PY) -m benchmarks

clean:
	rm -rf runs .pytest_cache
