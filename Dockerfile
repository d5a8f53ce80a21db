# The inferpool operator image: `docker build -t inferpool-operator:dev .`
#
# Two stages: the first builds a virtualenv from wheels only (no compiler is installed anywhere,
# so a dependency without a wheel fails the build instead of dragging build tools in); the
# second is the slim Python base with that virtualenv and nothing else, run as a non-root user
# with a read-only root filesystem in mind (no writes at run time: bytecode is compiled here).
#
# Pins: the base image by tag (pin it by digest in your own pipeline:
# python:3.11.13-slim-bookworm@sha256:...); every Python dependency, with its hash, from uv.lock,
# the repository's one lock (runtime closure only: `uv export` leaves the test and dev extras
# out); uv itself by the version the Makefile and uv.lock pin.

ARG PYTHON_IMAGE=python:3.11.13-slim-bookworm

FROM ${PYTHON_IMAGE} AS build
ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_ROOT_USER_ACTION=ignore \
    UV_NO_CACHE=1 \
    SSL_CERT_FILE=/etc/ssl/certs/ca-certificates.crt
# uv goes into a venv of its own (this stage only): the same on the official Python image and on
# a base built from Debian's python3 + python3-venv, whose system pip is absent and managed by apt.
RUN python -m venv /opt/uv \
 && /opt/uv/bin/pip install uv==0.13.8 \
 && python -m venv --without-pip /opt/inferpool
ENV PATH=/opt/uv/bin:$PATH
WORKDIR /src
# Dependencies first, in their own layer: it is rebuilt only when the lock or pyproject change.
COPY pyproject.toml uv.lock README.md ./
RUN uv export --quiet --frozen --no-emit-project --format requirements-txt -o /tmp/requirements.txt \
 && uv pip install --python /opt/inferpool/bin/python --only-binary=:all: --require-hashes \
      -r /tmp/requirements.txt
# Then the operator itself (not editable), built with the setuptools pyproject.toml pins exactly.
COPY operator ./operator
RUN uv pip install --python /opt/inferpool/bin/python --no-deps . \
 && /opt/inferpool/bin/python -m compileall -q /opt/inferpool

FROM ${PYTHON_IMAGE}
ARG VERSION=0.1.0
LABEL org.opencontainers.image.title="inferpool-operator" \
      org.opencontainers.image.description="Places model-serving replicas across NVIDIA, TPU and Neuron node pools" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.licenses="Apache-2.0"
ENV PATH=/opt/inferpool/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1
# The chart runs as 65532:65532 (runAsNonRoot needs a numeric USER to verify).
RUN groupadd --system --gid 65532 inferpool \
 && useradd --system --uid 65532 --gid 65532 --no-create-home --home-dir /nonexistent \
      --shell /usr/sbin/nologin inferpool
COPY --from=build /opt/inferpool /opt/inferpool
USER 65532:65532
WORKDIR /tmp
# 8080: /metrics and /readyz; 8081: /healthz (kopf's liveness).
EXPOSE 8080 8081
ENTRYPOINT ["inferpool"]
CMD ["run"]
