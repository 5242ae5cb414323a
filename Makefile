# Gauntlet: `make demo` runs a real attack job end to end; `make test` runs the whole suite.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo serve test test-fast bench bench-kinds bench-shards lint format clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	# Pin torch first: on the project's machines pip resolves torch==2.13.0 to the CPU wheel that lies on
	# local disk (elsewhere PyPI's default build, which on Linux x86_64 bundles CUDA). The worker extra's
	# torch>=2.2 is then already satisfied, so the next line installs no other torch.
	$(BIN)/pip install --quiet "torch==2.13.0"
	$(BIN)/pip install --quiet -e ".[worker,dev,bench,mlflow]"
	# Reference libraries for strength-parity tests and benchmarks. Both list torchvision (which would
	# pull a CUDA build of torch) but do not need it for the attacks we compare: install without deps.
	$(BIN)/pip install --quiet --no-deps "adversarial-robustness-toolbox==1.20.1" "torchattacks==3.5.1"
	touch $(STAMP)

# `make serve PORT=8080` picks the API's port; `make serve NO_DEMO=1` skips the four demo jobs.
demo: $(STAMP)
	$(BIN)/gauntlet demo $(if $(PORT),--port $(PORT))

serve: $(STAMP)
	$(BIN)/gauntlet serve $(if $(PORT),--port $(PORT)) $(if $(NO_DEMO),--no-demo)

# The engine tests need no services and run one torch thread each: they spread over the cores (one pytest
# process per core, a file's tests on one process); the service tests run in one process beside live workers.
test: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/mypy
	$(BIN)/python -m pytest -q -p no:cacheprovider -n auto --dist loadfile tests/engine
	$(BIN)/python -m pytest -q -p no:cacheprovider --ignore=tests/engine

test-fast: $(STAMP)
	$(BIN)/python -m pytest -q -p no:cacheprovider -n auto --dist loadfile -m "not slow"

bench: $(STAMP)
	$(BIN)/python benchmarks/bench_pgd.py
	$(BIN)/python benchmarks/bench_attacks.py
	$(BIN)/python benchmarks/bench_autoattack.py

# The three kinds against adversarial-robustness-toolbox: about two hours on two CPU cores
# (poisoning's comparison is most of it, ART's feature collision above all).
bench-kinds: $(STAMP)
	$(BIN)/python benchmarks/bench_extraction.py
	$(BIN)/python benchmarks/bench_defense.py --epochs 20
	$(BIN)/python benchmarks/bench_poisoning.py

# The service scaled out (live Postgres and Redis; REDIS_URL names a Redis database nobody else uses: it is
# flushed): shards over pool processes, a ResNet-18 job against a plain loop, API throughput, a busy machine.
# Full sizes take hours on two CPU cores; BENCH_ARGS="--aa-samples 40 --pgd-samples 8 --pgd-steps 5" is quick.
bench-shards: $(STAMP)
	$(BIN)/python benchmarks/bench_shards.py $(if $(REDIS_URL),--redis-url $(REDIS_URL)) $(BENCH_ARGS)

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check app worker migrations gauntlet_client gauntlet_cli

format: $(STAMP)
	$(BIN)/ruff format app worker migrations gauntlet_client gauntlet_cli tests benchmarks

clean:
	rm -rf $(VENV) .gauntlet .pytest_cache
