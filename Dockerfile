# dlwp-serving: the four book models behind one HTTP server.
#   CPU (default):  docker build -t dlwp-serving .
#   GPU:            docker build -t dlwp-serving:gpu --build-arg TENSORFLOW='tensorflow[and-cuda]' .
#   Run:            docker run -p 8000:8000 dlwp-serving
FROM python:3.11-slim

ARG TENSORFLOW=tensorflow
ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    DLWP_HOST=0.0.0.0 \
    DLWP_PORT=8000 \
    DLWP_MODELS_DIR=/app/models

WORKDIR /app
# Dependencies first, so a code change does not reinstall TensorFlow.
COPY pyproject.toml README.md ./
RUN pip install "${TENSORFLOW}" \
    && python -c "import tomllib; d = tomllib.load(open('pyproject.toml', 'rb')); \
print('\n'.join(x for x in d['project']['dependencies'] if not x.startswith('tensorflow')))" \
       > /tmp/requirements.txt \
    && pip install -r /tmp/requirements.txt
COPY service ./service
COPY training ./training
RUN pip install --no-deps .
COPY models ./models

RUN useradd --create-home --uid 10001 dlwp && chown -R dlwp /app
USER dlwp

EXPOSE 8000
HEALTHCHECK --interval=15s --timeout=3s --start-period=60s --retries=3 \
    CMD python -c "import urllib.request, os; urllib.request.urlopen('http://127.0.0.1:' + os.environ['DLWP_PORT'] + '/v2/health/ready', timeout=2)"
CMD ["dlwp", "serve"]
