# The first two commands a new user runs: `make serve` and `make test`.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
SHARED_DATA := $(abspath ../shared/datasets)

.PHONY: install serve test lint train evaluate wrk bench loadtest soak proto clean

install: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $@

serve: install
	$(BIN)/dlwp serve

test: install lint
	$(BIN)/python -m pytest

lint: install
	$(BIN)/ruff check service training tests loadtests
	$(BIN)/mypy

# Retrain every book model into models/ (data: $DLWP_DATA_DIR, else ../shared/datasets if present, else download).
train: install
	DLWP_DATA_DIR=$${DLWP_DATA_DIR:-$(if $(wildcard $(SHARED_DATA)),$(SHARED_DATA),)} $(BIN)/dlwp train all

evaluate: install
	DLWP_DATA_DIR=$${DLWP_DATA_DIR:-$(if $(wildcard $(SHARED_DATA)),$(SHARED_DATA),)} $(BIN)/dlwp evaluate all

# Benchmarks and load tests need wrk (Debian's package); installed here when missing.
wrk:
	@command -v wrk >/dev/null || (apt-get update -qq && apt-get install -y -qq wrk) || \
	  (echo "install wrk (e.g. apt-get install wrk) for make bench" && exit 1)

bench: install wrk
	$(BIN)/python loadtests/bench.py $(BENCH_ARGS)

loadtest: install
	$(BIN)/python loadtests/run_locust.py

soak: install
	$(BIN)/python loadtests/soak.py

# Recompile the gRPC protocol's descriptors after editing service/grpc/inference.proto.
proto: install
	$(BIN)/python -m grpc_tools.protoc -Iservice/grpc --descriptor_set_out=service/grpc/inference.pb \
	  service/grpc/inference.proto

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache *.egg-info

# GPU (issue 14): the wheels the H200 machine lacks (cp312 manylinux, into the ignored .whl/), and
# the test rows with TensorFlow's CPU answers that its run checks against. README "GPU".
.PHONY: gpu-wheels gpu-reference
gpu-wheels: install
	$(BIN)/python -m loadtests.gpu wheels --dest .whl

gpu-reference: install
	DLWP_DATA_DIR=$${DLWP_DATA_DIR:-$(if $(wildcard $(SHARED_DATA)),$(SHARED_DATA),)} $(BIN)/python -m loadtests.gpu reference
