# dlwp-serving: the four book models behind one server — the lean serving install only (no
# training extras, no test tools), every version from requirements.lock.
#
#   docker build -t dlwp-serving .                                               # TensorFlow, CPU
#   docker build -t dlwp-serving:cuda --build-arg CUDA=1 .                       # TensorFlow, CUDA
#   docker build -t dlwp-serving:jax-cuda --build-arg BACKEND=jax --build-arg CUDA=1 .  # Keras on JAX, CUDA
#   docker run -p 8000:8000 dlwp-serving          # CUDA variants: add --gpus all
#
# Without a container registry (as in CI): `bash ../shared/tools/python-base-image.sh` makes the
# base, `make wheels` puts the locked wheels in .wheels/ (installed from there, not downloaded
# again), then `podman build --format docker --pull=never --network host -t dlwp-serving .`
# (`make image` does the last two).
ARG PYTHON_IMAGE=python:3.11-slim

# The variant's requirements, from pyproject.toml: a stage of its own so that an edit elsewhere in
# pyproject.toml (lint settings, a dev tool) leaves the TensorFlow layer below cached.
FROM ${PYTHON_IMAGE} AS requirements
ARG BACKEND=tensorflow
ARG CUDA=0
COPY pyproject.toml /build/
COPY tools/serving_requirements.py /build/tools/
RUN python /build/tools/serving_requirements.py --backend "$BACKEND" --cuda "$CUDA" \
    > /build/requirements.txt

FROM ${PYTHON_IMAGE}
# BACKEND: tensorflow or jax (Keras on JAX, no TensorFlow at all); CUDA: 1 for the CUDA build.
ARG BACKEND=tensorflow
ARG CUDA=0
ENV PATH=/opt/dlwp/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_CACHE_DIR=1 \
    KERAS_BACKEND=${BACKEND} \
    DLWP_BACKEND=${BACKEND} \
    KERAS_HOME=/tmp/keras

# Dependencies first, so a code change does not reinstall TensorFlow. The wheelhouse is mounted,
# never copied, so it adds nothing to the image. TensorFlow's C++ headers (for building custom
# ops) are 100+ MB that nothing here uses.
COPY --from=requirements /build/requirements.txt /build/
COPY requirements.lock /build/
RUN --mount=type=bind,source=.wheels,target=/wheels \
    python -m venv /opt/dlwp \
    && pip install --quiet --find-links /wheels -c /build/requirements.lock \
       -r /build/requirements.txt \
    && rm -rf /opt/dlwp/lib/python3.11/site-packages/tensorflow/include
COPY pyproject.toml README.md /build/
COPY service /build/service
COPY training /build/training
RUN pip install --quiet --no-deps --no-build-isolation /build && rm -rf /build \
    && useradd --no-create-home --home-dir /nonexistent --uid 10001 dlwp

# Models baked in; mount a repository over /models (read-only is fine) to serve others. Desired
# state (repository calls) lives in the container's /tmp: each container has its own models, so a
# rollout is a new image; point DLWP_STATE_DIR at a shared writable volume to share it.
COPY models /models
USER 10001
WORKDIR /tmp
# Listening on every interface, repository control (load, unload, rollouts) is off until an API
# key is given: `docker run -e DLWP_API_KEY=<secret> …`, then send `Authorization: Bearer
# <secret>` with each call (docs/security.md). Predictions, metadata and metrics need no key.
ENV DLWP_HOST=0.0.0.0 \
    DLWP_PORT=8000 \
    DLWP_MODELS_DIR=/models \
    DLWP_STATE_DIR=/tmp/dlwp-state \
    DLWP_DRAIN_SECONDS=5
# 8000: HTTP (REST, V2, metrics); 8001: V2 gRPC (DLWP_GRPC_PORT).
EXPOSE 8000 8001
# Healthy = ready: models loaded and warm, and not draining after SIGTERM.
HEALTHCHECK --interval=10s --timeout=3s --start-period=60s --retries=3 \
    CMD ["python", "-c", "import os, urllib.request; urllib.request.urlopen('http://127.0.0.1:%s/v2/health/ready' % os.environ['DLWP_PORT'], timeout=2)"]
CMD ["dlwp", "serve"]
