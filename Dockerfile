# syntax=docker/dockerfile:1
# The inferpool operator image: `docker build -t inferpool-operator:dev .`
#
# Two stages: the first builds a virtualenv from wheels only (no compiler is installed anywhere,
# so a dependency without a wheel fails the build instead of dragging build tools in); the
# second is the slim Python base with that virtualenv and nothing else, run as a non-root user
# with a read-only root filesystem in mind (no writes at run time: bytecode is compiled here).
#
# Pins: the base image by tag (pin it by digest in your own pipeline:
# python:3.11.13-slim-bookworm@sha256:...), pip and setuptools by version, and every runtime
# dependency exactly (the versions the test suite ran with; from `pip freeze` of the venv,
# runtime closure only). Bump them together with pyproject.toml.

ARG PYTHON_IMAGE=python:3.11.13-slim-bookworm

FROM ${PYTHON_IMAGE} AS build
ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_ROOT_USER_ACTION=ignore
RUN python -m venv /opt/inferpool \
 && /opt/inferpool/bin/pip install pip==26.3 setuptools==80.9.0 wheel==0.45.1
COPY <<'PINS' /tmp/constraints.txt
aiohappyeyeballs==2.7.1
aiohttp==3.14.5
aiohttp-retry==2.9.1
aiosignal==1.4.0
annotated-types==0.8.0
attrs==26.1.0
certifi==2026.10.18
charset-normalizer==3.5.2
click==8.5.1
durationpy==0.11
frozenlist==1.8.0
highspy==1.15.1
idna==3.20
iso8601==2.1.0
jsonpatch==1.47
jsonpointer==3.12
kopf==1.45.2
kubernetes==37.0.2
multidict==7.2.1
numpy==2.4.6
oauthlib==4.0.1
prometheus-client==0.26.0
propcache==0.5.4
pydantic==2.14.3
pydantic-core==2.50.4
python-dateutil==4.0.0
python-json-logger==4.2.0
pyyaml==6.0.3
requests==2.34.2
requests-oauthlib==2.0.0
structlog==26.1.0
typing-extensions==4.16.0
typing-inspection==0.4.5
tzdata==2026.6
urllib3==2.8.0
websocket-client==1.9.2
yarl==1.25.1
PINS
WORKDIR /src
# Dependencies first, in their own layer: it is rebuilt only when the pins or pyproject change.
COPY pyproject.toml README.md ./
RUN python - <<'PY' > /tmp/requirements.txt
import tomllib
print("\n".join(tomllib.load(open("pyproject.toml", "rb"))["project"]["dependencies"]))
PY
RUN /opt/inferpool/bin/pip install --only-binary=:all: \
      -c /tmp/constraints.txt -r /tmp/requirements.txt
# Then the operator itself (a pure-Python wheel, not editable), built with the pinned setuptools
# (no build isolation: it would fetch whatever setuptools is newest).
COPY operator ./operator
RUN /opt/inferpool/bin/pip wheel --no-deps --no-build-isolation --wheel-dir /tmp/wheels . \
 && /opt/inferpool/bin/pip install --no-deps /tmp/wheels/*.whl \
 && /opt/inferpool/bin/pip check \
 && /opt/inferpool/bin/pip uninstall -y pip setuptools wheel \
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
