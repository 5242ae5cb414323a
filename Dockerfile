# One image, two commands: `gauntlet api` and `gauntlet worker`.
FROM python:3.11-slim AS runtime

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    GAUNTLET_DATA_DIR=/var/lib/gauntlet

# CPU build of PyTorch by default; build with --build-arg TORCH_INDEX=https://download.pytorch.org/whl/cu128
# for a CUDA worker image.
ARG TORCH_INDEX=https://download.pytorch.org/whl/cpu
RUN pip install "torch==2.13.0" --index-url "${TORCH_INDEX}"

WORKDIR /srv/gauntlet
COPY pyproject.toml README.md ./
COPY app ./app
COPY worker ./worker
COPY migrations ./migrations
RUN pip install . \
    && useradd --system --create-home --home-dir /var/lib/gauntlet gauntlet

USER gauntlet
EXPOSE 8000
HEALTHCHECK --interval=30s --timeout=5s CMD python -c "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8000/healthz')"
ENTRYPOINT ["gauntlet"]
CMD ["api", "--host", "0.0.0.0", "--port", "8000"]
