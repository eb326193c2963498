# The first two commands a new user runs: `make serve` and `make test`.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
SHARED_DATA := $(abspath ../shared/datasets)

# Every install takes its versions from requirements.lock (pip constraints; `make lock` refreshes it).
LOCK := requirements.lock
LEAN ?= .venv-lean
BACKEND ?= tensorflow
CUDA ?= 0
IMAGE ?= dlwp-serving

.PHONY: install serve test lint docs train evaluate wrk bench bench-ab loadtest soak proto clean lock lock-upgrade \
	lean wheels image

install: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml $(LOCK)
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -c $(LOCK) -e '.[dev]'
	touch $@

# Refresh the lock: keep its pins and the versions installed in $(VENV), add what is new.
lock: install
	$(BIN)/python tools/lock.py --prefer-installed

# … or take the newest versions pyproject.toml allows (then `make install` to follow).
lock-upgrade: install
	$(BIN)/python tools/lock.py --upgrade

# The serving install alone (what the CPU image has: no training extras, JAX or test tools), for
# measuring the server's own footprint (`make bench`).
lean: $(LEAN)/.installed

$(LEAN)/.installed: pyproject.toml $(LOCK)
	$(PYTHON) -m venv $(LEAN)
	$(LEAN)/bin/python tools/serving_requirements.py --wheels .wheels
	$(LEAN)/bin/python tools/serving_requirements.py > $(LEAN)/requirements.txt
	$(LEAN)/bin/python -m pip install --quiet --find-links .wheels -c $(LOCK) \
	  -r $(LEAN)/requirements.txt
	$(LEAN)/bin/python -m pip install --quiet --no-deps -e .
	touch $@

# The locked wheels of an image variant in .wheels/, which the image build installs from.
wheels: install
	$(BIN)/python tools/serving_requirements.py --backend $(BACKEND) --cuda $(CUDA) --wheels .wheels

# The image (BACKEND=tensorflow|jax, CUDA=0|1). Without a registry, make its base first:
# bash ../shared/tools/python-base-image.sh
image: wheels
	podman build --format docker --pull=missing --network host \
	  --build-arg BACKEND=$(BACKEND) --build-arg CUDA=$(CUDA) -t $(IMAGE) .

serve: install
	$(BIN)/dlwp serve

test: install lint
	$(BIN)/python -m pytest

lint: install
	$(BIN)/ruff check service training tests loadtests tools
	$(BIN)/mypy
	$(BIN)/lint-imports

# The documentation site in site/, offline; --strict: a broken link or a missing page fails it.
docs: install
	NO_MKDOCS_2_WARNING=1 $(BIN)/python -m mkdocs build --strict

# Retrain every book model into models/ (data: $DLWP_DATA_DIR, else ../shared/datasets if present, else download).
train: install
	DLWP_DATA_DIR=$${DLWP_DATA_DIR:-$(if $(wildcard $(SHARED_DATA)),$(SHARED_DATA),)} $(BIN)/dlwp train all

evaluate: install
	DLWP_DATA_DIR=$${DLWP_DATA_DIR:-$(if $(wildcard $(SHARED_DATA)),$(SHARED_DATA),)} $(BIN)/dlwp evaluate all

# Benchmarks and load tests need wrk (Debian's package); installed here when missing.
wrk:
	@command -v wrk >/dev/null || (apt-get update -qq && apt-get install -y -qq wrk) || \
	  (echo "install wrk (e.g. apt-get install wrk) for make bench" && exit 1)

bench: install wrk lean
	$(BIN)/python loadtests/bench.py $(BENCH_ARGS)

# This tree against an earlier commit, interleaved in one run: `make bench-ab BASE=<git ref>`.
bench-ab: install wrk
	$(BIN)/python loadtests/bench_ab.py --base $(BASE) $(BENCH_ARGS)

loadtest: install
	$(BIN)/python loadtests/run_locust.py

soak: install
	$(BIN)/python loadtests/soak.py

# Recompile the gRPC protocol's descriptors after editing service/grpc/inference.proto.
proto: install
	$(BIN)/python -m grpc_tools.protoc -Iservice/grpc --descriptor_set_out=service/grpc/inference.pb \
	  service/grpc/inference.proto

clean:
	rm -rf $(VENV) $(LEAN) .wheels/*.whl .pytest_cache .mypy_cache .ruff_cache *.egg-info

# GPU (issue 14): the wheels the H200 machine lacks (cp312 manylinux, into the ignored .whl/), and
# the test rows with TensorFlow's CPU answers that its run checks against. README "GPU".
.PHONY: gpu-wheels gpu-reference
gpu-wheels: install
	$(BIN)/python -m loadtests.gpu wheels --dest .whl

gpu-reference: install
	DLWP_DATA_DIR=$${DLWP_DATA_DIR:-$(if $(wildcard $(SHARED_DATA)),$(SHARED_DATA),)} $(BIN)/python -m loadtests.gpu reference
