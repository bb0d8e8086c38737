# syntax=docker/dockerfile:1
# heldout image. VARIANT picks the runtime:
#   docker build --build-arg VARIANT=cpu -t heldout:0.1.0-cpu .
#   docker build --build-arg VARIANT=gpu -t heldout:0.1.0-gpu .
# Configuration is HELDOUT_* environment variables only. No model weights or keys are baked in:
# mount a save_pretrained directory read-only under /models and set HELDOUT_MODEL_PATH.
ARG VARIANT=cpu

# The same standalone CPython goes into both runtimes, so the venv built here runs on either base.
FROM debian:bookworm-slim AS python
COPY --from=ghcr.io/astral-sh/uv:0.13.9 /uv /usr/local/bin/uv
ENV UV_PYTHON_INSTALL_DIR=/opt/python \
    UV_PYTHON_PREFERENCE=only-managed
RUN uv python install 3.11 \
    && uv venv --seed --python 3.11 /opt/venv

# torch first, from the PyTorch index of the variant; it satisfies pyproject's exact torch pin.
FROM python AS build
ARG VARIANT
ARG TORCH_VERSION=2.13.0
ARG TORCH_CUDA_INDEX=https://download.pytorch.org/whl/cu128
RUN case "${VARIANT}" in \
      cpu) index=https://download.pytorch.org/whl/cpu ;; \
      gpu) index="${TORCH_CUDA_INDEX}" ;; \
      *) echo "VARIANT must be cpu or gpu, not '${VARIANT}'" >&2; exit 1 ;; \
    esac \
    && /opt/venv/bin/pip install --no-cache-dir --index-url "${index}" "torch==${TORCH_VERSION}"
WORKDIR /src
COPY pyproject.toml README.md ./
COPY metrics ./metrics
COPY monitors ./monitors
COPY service ./service
RUN /opt/venv/bin/pip install --no-cache-dir . \
    && /opt/venv/bin/pip check

FROM debian:bookworm-slim AS runtime-cpu

FROM nvidia/cuda:12.8.1-runtime-ubuntu24.04 AS runtime-gpu

# runtime-${VARIANT} is one of the two stages above, not a registry image: DL3006 (pin a tag) does not
# apply, and hadolint cannot resolve the ARG (hadolint/hadolint#979).
# hadolint ignore=DL3006
FROM runtime-${VARIANT}
RUN groupadd --system --gid 10001 heldout \
    && useradd --system --uid 10001 --gid heldout --home-dir /var/lib/heldout --shell /usr/sbin/nologin heldout \
    && mkdir -p /var/lib/heldout /models \
    && chown heldout:heldout /var/lib/heldout
COPY --from=build /opt/python /opt/python
COPY --from=build /opt/venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    HELDOUT_DATA_DIR=/var/lib/heldout \
    HELDOUT_DEMO_MODEL=false
USER 10001:10001
WORKDIR /var/lib/heldout
VOLUME ["/var/lib/heldout"]
EXPOSE 8000
HEALTHCHECK --interval=30s --timeout=5s --start-period=300s --retries=3 \
    CMD ["python", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8000/healthz', timeout=4)"]
ENTRYPOINT ["heldout"]
CMD ["serve", "--host", "0.0.0.0", "--port", "8000"]
