#!/usr/bin/env bash
# Builds the test components that come from Go modules, once per machine:
#   testkit/kube-bin  kube-apiserver and kubectl (k8s.io/kubernetes)
#   testkit/etcd-bin  etcd and etcdctl (go.etcd.io/etcd, 3.6)
#   testkit/helm-bin  helm (helm.sh/helm/v3)
#   testkit/metallb-crds  MetalLB's own CRDs for the four kinds ferrolb reads and writes
#                     (config/crd/bases of go.universe.tf/metallb; data, nothing is built)
# Each module is built into target/go-bin/<module>-<hash of its go.mod and go.sum>/ and linked
# from target/go-bin/bin/; a module whose build is current is not touched. ferrolb itself is
# Rust: these binaries are only started by tests (ferrolb-testkit's KubeApiServer and Etcd36,
# tests/deploy.rs). Prints how long each build took.
set -euo pipefail
cd "$(dirname "$0")/.."
root="$PWD"
out="${CARGO_TARGET_DIR:-$root/target}/go-bin"
mkdir -p "$out/bin"

if ! command -v go >/dev/null 2>&1; then
  echo "kube-binaries: no Go toolchain (go) on PATH; install Go 1.26 or newer" >&2
  exit 1
fi
# The modules name go 1.26.0; a newer Go on the machine builds them too.
export GOFLAGS="${GOFLAGS:--mod=readonly}"
export CGO_ENABLED=0

# build <module dir> <ldflags> <binary=package>...
build() {
  local dir="$1" ldflags="$2"
  shift 2
  local name hash dest
  name="$(basename "$dir")"
  hash="$( (cat "$dir/go.mod" "$dir/go.sum"; echo "$ldflags") | sha256sum | cut -c1-16)"
  dest="$out/$name-$hash"
  if [ -f "$dest/.complete" ]; then
    :
  else
    local start=$SECONDS
    echo "kube-binaries: building $name ($*); a cold build takes minutes" >&2
    rm -rf "$dest.partial"
    mkdir -p "$dest.partial"
    local spec bin pkg
    for spec in "$@"; do
      bin="${spec%%=*}"
      pkg="${spec#*=}"
      (cd "$dir" && go build -trimpath -ldflags "$ldflags" -o "$dest.partial/$bin" "$pkg")
    done
    touch "$dest.partial/.complete"
    rm -rf "$dest"
    mv "$dest.partial" "$dest"
    echo "kube-binaries: built $name in $((SECONDS - start)) s" >&2
    # Earlier builds of this module are no longer linked from bin/.
    find "$out" -maxdepth 1 -name "$name-*" ! -name "$name-$hash" -exec rm -rf {} +
  fi
  for spec in "$@"; do
    bin="${spec%%=*}"
    ln -sfn "$dest/$bin" "$out/bin/$bin"
  done
}

# The version variables a release build sets, so that the binaries report their real versions
# (a plain `go build` says v0.0.0, and Helm would assume Kubernetes 1.20).
kube_version=v1.37.2
kube_ldflags="-X k8s.io/component-base/version.gitVersion=$kube_version \
  -X k8s.io/component-base/version.gitMajor=1 -X k8s.io/component-base/version.gitMinor=37 \
  -X k8s.io/client-go/pkg/version.gitVersion=$kube_version \
  -X k8s.io/client-go/pkg/version.gitMajor=1 -X k8s.io/client-go/pkg/version.gitMinor=37"
helm_ldflags="-X helm.sh/helm/v3/internal/version.version=v3.22.0 \
  -X helm.sh/helm/v3/pkg/chartutil.k8sVersionMajor=1 \
  -X helm.sh/helm/v3/pkg/chartutil.k8sVersionMinor=37"

build testkit/etcd-bin "" etcd=go.etcd.io/etcd/server/v3 etcdctl=go.etcd.io/etcd/etcdctl/v3
build testkit/helm-bin "$helm_ldflags" helm=helm.sh/helm/v3/cmd/helm
build testkit/kube-bin "$kube_ldflags" kube-apiserver=k8s.io/kubernetes/cmd/kube-apiserver \
  kubectl=k8s.io/kubernetes/cmd/kubectl

# MetalLB's CRDs: the module's files as the Go module proxy serves them (checked against go.sum),
# copied into target/go-bin/bin/metallb-crds/.
crds_hash="$(cat testkit/metallb-crds/go.mod testkit/metallb-crds/go.sum | sha256sum | cut -c1-16)"
crds="$out/metallb-crds-$crds_hash"
if [ ! -f "$crds/.complete" ]; then
  module_dir="$(cd testkit/metallb-crds && go mod download -json go.universe.tf/metallb |
    sed -n 's/^[[:space:]]*"Dir": "\(.*\)",$/\1/p')"
  if [ -z "$module_dir" ] || [ ! -d "$module_dir/config/crd/bases" ]; then
    echo "kube-binaries: go mod download of go.universe.tf/metallb gave no config/crd/bases" >&2
    exit 1
  fi
  rm -rf "$crds.partial"
  mkdir -p "$crds.partial"
  for kind in ipaddresspools l2advertisements configurationstates servicel2statuses; do
    install -m 0644 "$module_dir/config/crd/bases/metallb.io_$kind.yaml" "$crds.partial/"
  done
  touch "$crds.partial/.complete"
  rm -rf "$crds"
  mv "$crds.partial" "$crds"
  find "$out" -maxdepth 1 -name "metallb-crds-*" ! -name "metallb-crds-$crds_hash" -exec rm -rf {} +
fi
ln -sfn "$crds" "$out/bin/metallb-crds"
