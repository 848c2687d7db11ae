#!/usr/bin/env bash
# Provide the local control-plane binaries: etcd, kube-apiserver, kube-controller-manager,
# kube-scheduler, kubectl (same minor as the apiserver), kwok and helm.
#
# Each binary is looked for, in order:
#   1. $KUBEBUILDER_ASSETS (the envtest convention);
#   2. the project's cache, keyed by the versions in hack/versions.env
#      ($CFTUNNEL_CACHE_DIR, default ~/.cache/cftunnel-operator);
#   3. the official release downloads (short timeouts: an offline machine falls through fast);
#   4. a build from the Go module proxy with the local Go toolchain (GOTOOLCHAIN=local).
# The script is idempotent, prints progress on stderr and, on success, prints the folder that
# holds all seven binaries on stdout. Nothing it fetches or builds lands in the repository.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=versions.env
source "$here/versions.env"

cache_root=${CFTUNNEL_CACHE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/cftunnel-operator}
key="k8s-${KUBERNETES_VERSION}_etcd-${ETCD_VERSION}_kwok-${KWOK_VERSION}_helm-${HELM_VERSION}"
bin_dir="$cache_root/controlplane/$key/bin"
build_dir="$cache_root/controlplane/$key/build"
binaries=(etcd kube-apiserver kube-controller-manager kube-scheduler kubectl kwok helm)

log() { printf '[controlplane] %s\n' "$*" >&2; }

case "$(uname -m)" in
  x86_64) arch=amd64 ;;
  aarch64 | arm64) arch=arm64 ;;
  *) log "unsupported architecture $(uname -m)"; exit 1 ;;
esac
os=$(uname -s | tr '[:upper:]' '[:lower:]')

mkdir -p "$bin_dir"

reports_version() {  # reports_version BINARY: does the binary report the pinned version?
  local name=$1 path=$bin_dir/$1 out
  [ -x "$path" ] || return 1
  case "$name" in
    etcd) out=$("$path" --version 2>/dev/null) && grep -q "$ETCD_VERSION" <<<"$out" ;;
    kubectl) out=$("$path" version --client 2>/dev/null) && grep -q "v${KUBERNETES_VERSION%.*}" <<<"$out" ;;
    kwok) out=$("$path" --version 2>/dev/null) && grep -q "$KWOK_VERSION" <<<"$out" ;;
    helm) out=$("$path" version --short 2>/dev/null) && grep -q "v$HELM_VERSION" <<<"$out" ;;
    *) out=$("$path" --version 2>/dev/null) && grep -q "v${KUBERNETES_VERSION%.*}" <<<"$out" ;;
  esac
}

missing() {
  local name list=()
  for name in "${binaries[@]}"; do reports_version "$name" || list+=("$name"); done
  echo "${list[@]}"
}

# 1. KUBEBUILDER_ASSETS: link whatever it has at the right version into the cache folder.
if [ -n "${KUBEBUILDER_ASSETS:-}" ] && [ -d "$KUBEBUILDER_ASSETS" ]; then
  for name in $(missing); do
    if [ -x "$KUBEBUILDER_ASSETS/$name" ]; then
      ln -sf "$KUBEBUILDER_ASSETS/$name" "$bin_dir/$name"
      reports_version "$name" && log "$name from KUBEBUILDER_ASSETS" || rm -f "$bin_dir/$name"
    fi
  done
fi

# 2. The cache: done if everything is there.
if [ -z "$(missing)" ]; then
  log "all binaries cached in $bin_dir"
  echo "$bin_dir"
  exit 0
fi

# 3. Official downloads, each with a short connect timeout.
fetch() {  # fetch URL DEST
  curl -fsSL --connect-timeout 5 --max-time 600 -o "$2" "$1" 2>/dev/null
}
download() {
  local tmp name
  tmp=$(mktemp -d)
  trap 'rm -rf "$tmp"' RETURN
  if ! curl -fsS --connect-timeout 5 --max-time 10 -o /dev/null -I "https://dl.k8s.io/" 2>/dev/null; then
    log "release downloads are not reachable; skipping them"
    return 0
  fi
  for name in $(missing); do
    case "$name" in
      etcd)
        log "downloading etcd v$ETCD_VERSION"
        fetch "https://github.com/etcd-io/etcd/releases/download/v$ETCD_VERSION/etcd-v$ETCD_VERSION-$os-$arch.tar.gz" "$tmp/etcd.tgz" &&
          tar -xzf "$tmp/etcd.tgz" -C "$tmp" && install -m 0755 "$tmp/etcd-v$ETCD_VERSION-$os-$arch/etcd" "$bin_dir/etcd" || true ;;
      kwok)
        log "downloading kwok v$KWOK_VERSION"
        fetch "https://github.com/kubernetes-sigs/kwok/releases/download/v$KWOK_VERSION/kwok-$os-$arch" "$tmp/kwok" &&
          install -m 0755 "$tmp/kwok" "$bin_dir/kwok" || true ;;
      helm)
        log "downloading helm v$HELM_VERSION"
        fetch "https://get.helm.sh/helm-v$HELM_VERSION-$os-$arch.tar.gz" "$tmp/helm.tgz" &&
          tar -xzf "$tmp/helm.tgz" -C "$tmp" && install -m 0755 "$tmp/$os-$arch/helm" "$bin_dir/helm" || true ;;
      *)
        log "downloading $name v$KUBERNETES_VERSION"
        fetch "https://dl.k8s.io/release/v$KUBERNETES_VERSION/bin/$os/$arch/$name" "$tmp/$name" &&
          install -m 0755 "$tmp/$name" "$bin_dir/$name" || true ;;
    esac
  done
}
download

# 4. Build from the Go module proxy.
build() {
  command -v go >/dev/null || { log "no Go toolchain to build the missing binaries: $(missing)"; return 1; }
  export GOTOOLCHAIN=local GOFLAGS=-mod=mod CGO_ENABLED=0
  mkdir -p "$build_dir"
  cd "$build_dir"
  if [ ! -f go.mod ]; then
    log "preparing a Go module for Kubernetes v$KUBERNETES_VERSION (first run downloads ~1 GB of modules)"
    cat >go.mod <<GOMOD
module cftunnel.dev/controlplane-build

go 1.25.0
GOMOD
    cat >tools.go <<'GO'
//go:build tools

// Package tools pins the commands this module builds.
package tools

import (
	_ "go.etcd.io/etcd/server/v3"
	_ "k8s.io/kubernetes/cmd/kube-apiserver"
	_ "k8s.io/kubernetes/cmd/kube-controller-manager"
	_ "k8s.io/kubernetes/cmd/kube-scheduler"
	_ "k8s.io/kubernetes/cmd/kubectl"
)
GO
    go mod edit -require="k8s.io/kubernetes@v$KUBERNETES_VERSION" -require="go.etcd.io/etcd/server/v3@v$ETCD_VERSION"
    go mod download "k8s.io/kubernetes@v$KUBERNETES_VERSION"
    # Kubernetes requires its staging modules at v0.0.0 and replaces them with local folders;
    # point each one at its published release instead (kubernetes/kubernetes#79384).
    local kmod staging
    kmod=$(go mod download -json "k8s.io/kubernetes@v$KUBERNETES_VERSION" | sed -n 's/.*"GoMod": "\(.*\)".*/\1/p')
    staging=$(grep -oE '^\s*k8s\.io/[a-z0-9-]+ => \./staging' "$kmod" | awk '{print $1}')
    for m in $staging; do
      go mod edit -replace="$m=$m@v0.${KUBERNETES_VERSION#1.}"
    done
    go mod tidy -e >/dev/null 2>&1 || true
    go mod download
  fi
  local pkg="k8s.io/component-base/version"
  local minor=${KUBERNETES_VERSION#1.}; minor=${minor%%.*}
  local ldflags="-s -w -X $pkg.gitVersion=v$KUBERNETES_VERSION -X $pkg.gitMajor=1 -X $pkg.gitMinor=$minor -X $pkg.gitTreeState=clean -X $pkg.buildDate=1970-01-01T00:00:00Z"
  ldflags="$ldflags -X k8s.io/client-go/pkg/version.gitVersion=v$KUBERNETES_VERSION -X k8s.io/client-go/pkg/version.gitMajor=1 -X k8s.io/client-go/pkg/version.gitMinor=$minor"
  for name in $(missing); do
    case "$name" in
      etcd)
        log "building etcd v$ETCD_VERSION"
        go build -trimpath -ldflags "-s -w" -o "$bin_dir/etcd" go.etcd.io/etcd/server/v3 ;;
      kwok)
        log "building kwok v$KWOK_VERSION"
        GOBIN="$bin_dir" go install -trimpath -ldflags "-s -w -X sigs.k8s.io/kwok/pkg/consts.Version=v$KWOK_VERSION" "sigs.k8s.io/kwok/cmd/kwok@v$KWOK_VERSION" ;;
      helm)
        log "building helm v$HELM_VERSION"
        GOBIN="$bin_dir" go install -trimpath -ldflags "-s -w -X helm.sh/helm/v3/internal/version.version=v$HELM_VERSION" "helm.sh/helm/v3/cmd/helm@v$HELM_VERSION" ;;
      *)
        log "building $name v$KUBERNETES_VERSION (several minutes on 2 cores)"
        go build -trimpath -ldflags "$ldflags" -o "$bin_dir/$name" "k8s.io/kubernetes/cmd/$name" ;;
    esac
  done
}
[ -z "$(missing)" ] || build

left=$(missing)
if [ -n "$left" ]; then
  log "could not provide: $left"
  exit 1
fi
log "all binaries ready in $bin_dir"
echo "$bin_dir"
