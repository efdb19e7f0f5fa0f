# One entry point for newcomers and CI. `make demo` and `make test` install what they need.
SHELL := /bin/bash
VENV ?= .venv
PY := $(VENV)/bin/python
export TORCH_EXTENSIONS_DIR := $(CURDIR)/.torch_extensions
export PIP_CONSTRAINT := $(CURDIR)/$(VENV)/constraints.txt
export DS_ACCELERATOR := cpu
export PYTHONPATH := $(CURDIR)
# Hard ceiling so a Ray resource deadlock fails the run instead of hanging CI.
TEST_TIMEOUT ?= 3600
# 2 (the default): two pytest-xdist workers, each a whole module at a time with its own embedded
# Ray; the box is busy 97% of the time instead of 48% (docs/testing.md). 0: one process.
TEST_WORKERS ?= 2
DEMO_OUT ?= demo_out

.PHONY: install demo demo-alpro sweep-demo test lint format bench clean help

help:  ## list targets
	@grep -E '^[a-z-]+:.*##' $(MAKEFILE_LIST) | sed 's/:.*## /\t/'

install:  ## idempotent: apt ffmpeg/espeak-ng, .venv with CPU torch, project (editable, dev), DeepSpeed op warm-up
	@bash scripts/install.sh $(INSTALL_FLAGS)

demo: install  ## sample corpus -> shards -> pretraining -> eval vs untrained -> fine-tuning (embedded local Ray)
	@bash scripts/demo.sh $(DEMO_OUT)

demo-alpro: install  ## ALPRO (docs/alpro.md): WebVid-style sample set -> prompter -> full model -> demo_out/alpro/report.json
	@bash scripts/demo_alpro.sh $(DEMO_OUT)

sweep-demo: install  ## 3-trial Ray Tune sweep (ASHA) of the debug preset on the demo shards, then train the best config
	@bash scripts/sweep_demo.sh $(DEMO_OUT)

lint: install  ## ruff lint + format check
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

format: install  ## apply ruff formatting and safe fixes
	$(VENV)/bin/ruff check --fix .
	$(VENV)/bin/ruff format .

# `make test` also installs the system tools of tests/test_ray_up.py (sshd, rsync, ip); a
# target-specific variable reaches the `install` prerequisite.
test: INSTALL_FLAGS += --test-tools
test: install lint  ## the whole suite (real ffmpeg, real Ray, real DeepSpeed)
	timeout -k 30 $(TEST_TIMEOUT) $(PY) -m pytest -q -n $(TEST_WORKERS) --dist loadfile tests

bench: install  ## benchmarks (JSON to stdout and bench_out/)
	@mkdir -p bench_out
	$(PY) benchmarks/preprocess.py | tee bench_out/preprocess.json
	$(PY) benchmarks/loader.py --shards bench_out/loader_shards --json | tee bench_out/loader.json
	$(PY) benchmarks/model_step.py | tee bench_out/model_step.json
	@test -d $(DEMO_OUT)/shards/howto100m || { echo "benchmarks/train.py needs demo shards: run make demo first"; exit 1; }
	$(PY) benchmarks/train.py

clean:  ## remove generated outputs (keeps .venv)
	rm -rf $(DEMO_OUT) bench_out .pytest_cache .ruff_cache
