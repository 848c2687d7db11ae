#!/usr/bin/env bash
# End to end on kind (`make e2e`): the operator image, installed with the Helm chart, runs the
# examples in a real cluster against the Cloudflare API emulator, and every Tunnel and
# VPCService must become Ready.
#
# NEEDS A DOCKER ENGINE (kind runs the cluster's nodes as containers). It is not part of
# `make test` or CI, which need no Docker: until it has been run on a machine with Docker, treat
# it as checked by `bash -n` and shellcheck only.
#
# Steps: create a kind cluster (kind pinned in hack/versions.env; its default node image, or
# $KIND_NODE_IMAGE) -> build the operator image and a cloudflared stand-in image on top of it
# (hack/e2e/) and load both -> run the emulator in the cluster from the operator image, with a
# seeded account and token (hack/e2e/emulator.yaml) -> install the chart pointing at it
# (hack/e2e/values.yaml) -> apply examples/ with a token Secret in each of their namespaces ->
# wait for Ready -> print the objects -> delete the cluster (always, unless E2E_KEEP=1).
#
# The connector pods run the stand-in (hack/e2e/cloudflared_stub.py), not cloudflared: the
# emulator's tunnels exist nowhere on Cloudflare's network, so a real cloudflared could never
# connect. Everything else is real: the image, the chart, RBAC, the admission guard, the
# operator and the Kubernetes objects it makes.
# examples/adopt-existing-tunnel.yaml is left out: it names a tunnel id that must already exist
# in the account (adoption is covered by the integration tests).
#
# Environment: E2E_CLUSTER (default cftunnel-e2e), E2E_KEEP=1 (keep the cluster and print how to
# reach it), KIND_NODE_IMAGE (another node image), E2E_TIMEOUT (default 5m).
set -euo pipefail

repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
# shellcheck source-path=SCRIPTDIR source=versions.env
source "$repo/hack/versions.env"

cluster=${E2E_CLUSTER:-cftunnel-e2e}
timeout=${E2E_TIMEOUT:-5m}
account=0123456789abcdef0123456789abcdef # the examples' placeholder account id
work=$(mktemp -d)
export KUBECONFIG=$work/kubeconfig        # never the user's own kubeconfig

log() { printf '[e2e] %s\n' "$*" >&2; }

command -v docker >/dev/null || { log "docker is required"; exit 1; }
docker info >/dev/null 2>&1 || { log "no Docker engine answers: start one first"; exit 1; }

# kubectl and helm at the project's pinned versions.
PATH="$(bash "$repo/hack/provision-controlplane.sh" | tail -n1):$PATH"

# kind at the pinned version: from PATH, else the project's cache (downloaded or built).
kind_bin() {
  if command -v kind >/dev/null && kind version | grep -q "v${KIND_VERSION} "; then
    command -v kind
    return
  fi
  local cache=${CFTUNNEL_CACHE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/cftunnel-operator}
  local dir=$cache/kind-$KIND_VERSION os arch
  os=$(uname -s | tr '[:upper:]' '[:lower:]')
  case "$(uname -m)" in x86_64) arch=amd64 ;; aarch64 | arm64) arch=arm64 ;; *) arch=$(uname -m) ;; esac
  if [ ! -x "$dir/kind" ]; then
    mkdir -p "$dir"
    log "fetching kind v$KIND_VERSION"
    curl -fsSL --retry 3 -o "$dir/kind" "https://kind.sigs.k8s.io/dl/v${KIND_VERSION}/kind-${os}-${arch}" \
      || GOBIN=$dir GOTOOLCHAIN=local go install "sigs.k8s.io/kind@v${KIND_VERSION}"
    chmod +x "$dir/kind"
  fi
  echo "$dir/kind"
}
kind=$(kind_bin)

cleanup() {
  local status=$?
  if [ "${E2E_KEEP:-0}" = 1 ]; then
    log "cluster $cluster kept: export KUBECONFIG=$KUBECONFIG; delete it with: $kind delete cluster --name $cluster"
  else
    log "deleting cluster $cluster"
    "$kind" delete cluster --name "$cluster" >/dev/null 2>&1 || true
    rm -rf "$work"
  fi
  exit "$status"
}
trap cleanup EXIT

log "creating kind cluster $cluster (kind v$KIND_VERSION)"
"$kind" create cluster --name "$cluster" --kubeconfig "$KUBECONFIG" --wait 120s \
  ${KIND_NODE_IMAGE:+--image "$KIND_NODE_IMAGE"}

log "building and loading the images"
docker build -t cftunnel-operator:e2e "$repo"
docker build -t cloudflared-stub:e2e -f "$repo/hack/e2e/cloudflared-stub.Dockerfile" \
  --build-arg OPERATOR_IMAGE=cftunnel-operator:e2e "$repo/hack/e2e"
"$kind" load docker-image --name "$cluster" cftunnel-operator:e2e cloudflared-stub:e2e

token=$(head -c 32 /dev/urandom | base64 | tr -dc 'A-Za-z0-9' | head -c 40)
# create_secret NAMESPACE NAME KEY=VALUE...: create or replace a generic Secret.
create_secret() {
  local namespace=$1 name=$2
  shift 2
  kubectl create namespace "$namespace" --dry-run=client -o yaml | kubectl apply -f - >/dev/null
  kubectl -n "$namespace" create secret generic "$name" "${@/#/--from-literal=}" \
    --dry-run=client -o yaml | kubectl apply -f - >/dev/null
}

log "starting the Cloudflare API emulator"
create_secret cloudflare-emulator emulator-seed "accountId=$account" "token=$token"
kubectl apply -f "$repo/hack/e2e/emulator.yaml"
kubectl -n cloudflare-emulator rollout status deployment/cloudflare-emulator --timeout=120s

log "installing the chart"
create_secret cftunnel-system cloudflare-api-token "token=$token"
helm install cftunnel-operator "$repo/charts/cftunnel-operator" --namespace cftunnel-system \
  -f "$repo/hack/e2e/values.yaml" --wait --timeout 3m

log "applying the examples"
for file in "$repo"/examples/*.yaml "$repo"/examples/demo/*.yaml; do
  [ "$(basename "$file")" = adopt-existing-tunnel.yaml ] && continue
  # The token Secret each example's header asks for, in each namespace it creates.
  for namespace in $(kubectl apply --dry-run=client -f "$file" -o name | sed -n 's|^namespace/||p'); do
    create_secret "$namespace" cloudflare-api-token "token=$token"
  done
  kubectl apply -f "$file"
done

log "waiting for every Tunnel and VPCService to be Ready (at most $timeout)"
if ! kubectl wait --for=condition=Ready cftun,vpcsvc --all --all-namespaces --timeout="$timeout"; then
  kubectl get cftun,vpcsvc -A -o wide || true
  kubectl -n cftunnel-system logs deployment/cftunnel-operator --tail=100 || true
  exit 1
fi
kubectl get cftun,vpcsvc -A -o wide
log "every Tunnel and VPCService is Ready"
