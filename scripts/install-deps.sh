#!/usr/bin/env bash
# Installs the Debian packages that building and testing ferrolb need, when they are missing.
# Safe to run again: it installs nothing when everything is present. Needs root (or sudo).
set -euo pipefail

packages=(
  pkg-config      # openssl-sys, libgit2-sys
  libssl-dev
  protobuf-compiler  # etcd-client's build
  libprotobuf-dev
  git
  time            # /usr/bin/time in scripts/bench-plan.sh
  etcd-server     # /usr/bin/etcd for ferrolb-testkit's Etcd harness
  etcd-client     # /usr/bin/etcdctl: Etcd::ctl and tests
  iproute2        # ip netns/link/addr/route: the testkit's network lab
  arping          # Lab::arping (Thomas Habets' arping 2.x)
  ndisc6          # Lab::ndisc: IPv6 neighbor solicitation
  nftables        # Lab::nft: firewall rules inside lab namespaces
  iputils-ping    # Lab::ping
  curl            # etcd health checks inside lab namespaces
  procps          # kill(1) and sysctl(8) used by the testkit
  openssl         # certificates for the etcd TLS tests
  openssh-server  # sshd (and ssh-keygen) for the live Git-over-SSH test; not started as a service
  python3         # the HTTPS Git server of the live Git-over-HTTPS test
  keepalived      # the peer ferrolb-lab-bench failover compares with (VRRPv3); not started as a service
)

# kubectl reads the fake API server in the reconciler's tests; Debian's kubernetes-client only
# when the machine has no kubectl of its own.
command -v kubectl >/dev/null 2>&1 || packages+=(kubernetes-client)

missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -eq 0 ]; then
  exit 0
fi
sudo=""
[ "$(id -u)" -eq 0 ] || sudo="sudo"
echo "installing: ${missing[*]}" >&2
export DEBIAN_FRONTEND=noninteractive
$sudo apt-get update -qq
$sudo apt-get install -y -qq --no-install-recommends "${missing[@]}"
