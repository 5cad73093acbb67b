#!/usr/bin/env bash
# `make images`: builds ferrolb-reconciler and ferrolb-speaker with docker buildx from
# deploy/docker/Dockerfile, tagged <REGISTRY/>ferrolb-<daemon>:<VERSION>.
#   REGISTRY   where to push (registry.example.com/you); empty: local names only
#   VERSION    the tag; default: the workspace version (the chart's appVersion)
#   PLATFORMS  default linux/amd64,linux/arm64 with PUSH=1, else this machine's platform
#   PUSH=1     push (a multi-platform image can only be pushed, not loaded into docker)
# Building for a foreign architecture runs the final stages' apt-get under QEMU: install its
# binfmt handlers once with `docker run --privileged --rm tonistiigi/binfmt --install arm64`.
set -euo pipefail
cd "$(dirname "$0")/.."
version="${VERSION:-$(sed -n 's/^version = "\(.*\)"$/\1/p' Cargo.toml | head -n1)}"
push="${PUSH:-0}"
if [ "$push" = 1 ]; then
  platforms="${PLATFORMS:-linux/amd64,linux/arm64}"
  output=--push
  if [ -z "${REGISTRY:-}" ]; then
    echo "images: PUSH=1 needs REGISTRY (e.g. REGISTRY=registry.example.com/you)" >&2
    exit 1
  fi
else
  platforms="${PLATFORMS:-linux/$(docker version --format '{{.Server.Arch}}')}"
  output=--load
  case "$platforms" in
    *,*) echo "images: several PLATFORMS need PUSH=1 (docker cannot load a multi-platform image)" >&2; exit 1 ;;
  esac
fi
for daemon in reconciler speaker; do
  image="${REGISTRY:+$REGISTRY/}ferrolb-$daemon:$version"
  echo "images: $image for $platforms" >&2
  docker buildx build -f deploy/docker/Dockerfile --target "$daemon" \
    --platform "$platforms" -t "$image" "$output" .
done
