# syntax=docker/dockerfile:1
#
# The cftunnel-operator image: the operator's wheel and its runtime dependencies on a slim
# Python, run as a non-root numeric user. Build from the repository root:
#
#   docker build -t cftunnel-operator:dev .
#
# The base is pinned by tag. A tag can be moved by its publisher; for reproducible builds pin
# the digest as well, e.g. from `docker buildx imagetools inspect python:3.12-slim-bookworm`:
#
#   docker build --build-arg PYTHON_IMAGE=python:3.12-slim-bookworm@sha256:<digest> .
#
# (and let a bot such as Renovate or Dependabot keep the digest current).
ARG PYTHON_IMAGE=python:3.12-slim-bookworm

# --- builder: wheels for the project and every runtime dependency --------------------------------
FROM ${PYTHON_IMAGE} AS builder
ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_ROOT_USER_ACTION=ignore
WORKDIR /src
COPY pyproject.toml README.md ./
COPY operator/ operator/
# First the project alone, then its dependencies resolved from the project's wheel (the
# runtime ones only: no extras, so no test or development tools reach the image).
RUN python -m pip wheel --no-deps --wheel-dir /wheels/project . \
 && python -m pip wheel --wheel-dir /wheels/deps /wheels/project/*.whl \
 && rm -f /wheels/deps/cftunnel_operator-*.whl

# --- runtime -------------------------------------------------------------------------------------
FROM ${PYTHON_IMAGE}
ARG PYTHON_IMAGE
ARG VERSION=0.1.0
ARG REVISION=unknown
LABEL org.opencontainers.image.title="cftunnel-operator" \
      org.opencontainers.image.description="Kubernetes operator for Cloudflare Tunnels and Cloudflare Workers VPC services" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.revision="${REVISION}" \
      org.opencontainers.image.licenses="Apache-2.0" \
      org.opencontainers.image.base.name="${PYTHON_IMAGE}"
# Install from the builder's wheels only (no index, no compiler, no cache), mounted for this
# step so that they never become a layer; then drop pip, which the operator does not need.
RUN --mount=type=bind,from=builder,source=/wheels,target=/wheels \
    python -m pip install --no-cache-dir --no-index --disable-pip-version-check \
      --root-user-action=ignore /wheels/deps/*.whl /wheels/project/*.whl \
 && python -m pip uninstall --yes --root-user-action=ignore pip
# Bytecode was compiled at install time; the root filesystem is read-only at run time.
ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    HOME=/tmp
# The numeric user the chart's securityContext expects (runAsNonRoot needs a number to verify).
USER 65532:65532
EXPOSE 8080 9090
ENTRYPOINT ["cftunnel-operator"]
