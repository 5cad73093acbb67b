#!/usr/bin/env bash
# Builds the test components that come from Go modules, once per machine:
#   testkit/kube-bin  kube-apiserver and kubectl (k8s.io/kubernetes)
#   testkit/etcd-bin  etcd and etcdctl (go.etcd.io/etcd, 3.6)
#   testkit/helm-bin  helm (helm.sh/helm/v3)
#   testkit/metallb-crds  MetalLB's own CRDs for the four kinds ferrolb reads and writes
#                     (config/crd/bases of go.universe.tf/metallb; data, nothing is built)
#   testkit/prometheus-operator-crds  the PodMonitor, ServiceMonitor and PrometheusRule CRDs
#                     (example/prometheus-operator-crd of the Prometheus Operator's module; data)
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

# crds <name> <module> <directory in the module> <file>...: CRDs of a module as the Go module
# proxy serves it (checked against testkit/<name>/go.sum), copied into target/go-bin/bin/<name>/.
crds() {
  local name="$1" module="$2" subdir="$3"
  shift 3
  local hash dest module_dir file
  hash="$(cat "testkit/$name/go.mod" "testkit/$name/go.sum" | sha256sum | cut -c1-16)"
  dest="$out/$name-$hash"
  if [ ! -f "$dest/.complete" ]; then
    module_dir="$(cd "testkit/$name" && go mod download -json "$module" |
      sed -n 's/^[[:space:]]*"Dir": "\(.*\)",$/\1/p')"
    if [ -z "$module_dir" ] || [ ! -d "$module_dir/$subdir" ]; then
      echo "kube-binaries: go mod download of $module gave no $subdir" >&2
      exit 1
    fi
    rm -rf "$dest.partial"
    mkdir -p "$dest.partial"
    for file in "$@"; do
      install -m 0644 "$module_dir/$subdir/$file" "$dest.partial/"
    done
    touch "$dest.partial/.complete"
    rm -rf "$dest"
    mv "$dest.partial" "$dest"
    find "$out" -maxdepth 1 -name "$name-*" ! -name "$name-$hash" -exec rm -rf {} +
  fi
  ln -sfn "$dest" "$out/bin/$name"
}

# MetalLB's own CRDs for the four kinds ferrolb reads and writes.
crds metallb-crds go.universe.tf/metallb config/crd/bases \
  metallb.io_ipaddresspools.yaml metallb.io_l2advertisements.yaml \
  metallb.io_configurationstates.yaml metallb.io_servicel2statuses.yaml
# The Prometheus Operator's CRDs for the chart's monitoring objects.
crds prometheus-operator-crds github.com/prometheus-operator/prometheus-operator \
  example/prometheus-operator-crd monitoring.coreos.com_podmonitors.yaml \
  monitoring.coreos.com_servicemonitors.yaml monitoring.coreos.com_prometheusrules.yaml
