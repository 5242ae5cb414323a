# One Dockerfile, two targets: `api` (no torch: `gauntlet api`) and `worker` (the worker extra).
#   docker build --target api -t gauntlet-api .
#   docker build --target worker -t gauntlet-worker .                      (CPU build of PyTorch)
#   docker build --target worker --build-arg TORCH_INDEX=https://download.pytorch.org/whl/cu128 .
FROM python:3.11-slim AS base

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    GAUNTLET_DATA_DIR=/var/lib/gauntlet

WORKDIR /srv/gauntlet
COPY pyproject.toml README.md ./
COPY app ./app
COPY worker ./worker
COPY migrations ./migrations
COPY gauntlet_cli ./gauntlet_cli
COPY gauntlet_client ./gauntlet_client
RUN useradd --system --create-home --home-dir /var/lib/gauntlet gauntlet

FROM base AS api
RUN pip install .
USER gauntlet
EXPOSE 8000
HEALTHCHECK --interval=30s --timeout=5s CMD python -c "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8000/healthz')"
ENTRYPOINT ["gauntlet"]
CMD ["api", "--host", "0.0.0.0", "--port", "8000"]

FROM base AS worker
# CPU build of PyTorch by default; pass TORCH_INDEX (see above) for a CUDA worker image.
ARG TORCH_INDEX=https://download.pytorch.org/whl/cpu
RUN pip install "torch==2.13.0" --index-url "${TORCH_INDEX}" \
    && pip install ".[worker]"
USER gauntlet
ENTRYPOINT ["gauntlet"]
CMD ["worker"]
