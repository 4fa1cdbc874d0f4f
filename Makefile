# Two commands on a fresh machine: `make run` and `make test` (see README.md).
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
# The install is redone when pyproject.toml changes or the venv served another checkout.
INSTALL_ID := $(CURDIR) $(shell sha256sum pyproject.toml | cut -c1-16)

.PHONY: install run test lint bench gpu-check clean

install:
	@if [ "$$(cat $(VENV)/.harness-install 2>/dev/null)" != "$(INSTALL_ID)" ]; then \
		set -e; \
		test -x $(BIN)/python || $(PYTHON) -m venv $(VENV); \
		$(BIN)/python -m pip install --quiet --upgrade pip; \
		echo "installing harness and its dependencies into $(VENV) (about 5 GB, 4-5 minutes)"; \
		$(BIN)/python -m pip install --quiet -e '.[test]'; \
		echo "$(INSTALL_ID)" > $(VENV)/.harness-install; \
	fi

run: install  ## the main job: the fusion ablation on the embedded default data
	$(BIN)/harness weights provision
	$(BIN)/harness run experiments/ablation_fusion.yaml

test: install  ## lint, the whole test suite, then the regression gate (README, "Regression gate")
	$(BIN)/ruff check harness tests benchmarks
	$(BIN)/python -m pytest
	$(BIN)/harness weights provision
	$(BIN)/harness check experiments/ci/ --no-progress

bench: install  ## benchmark scripts (print figures; no assertions)
	$(BIN)/harness weights provision
	$(BIN)/python benchmarks/sweep_overhead.py
	$(BIN)/python benchmarks/inception_throughput.py
	$(BIN)/python benchmarks/sampler_overhead.py
	$(BIN)/python benchmarks/gddcm_overhead.py
	$(BIN)/python benchmarks/data_memory.py --images 2000

gpu-check: install  ## every stage on the GPU: device, precision, images/s, peak memory per stage
	$(BIN)/harness weights provision
	$(BIN)/python benchmarks/gpu_check.py

clean:
	rm -rf .harness mlflow.db mlartifacts .pytest_cache
