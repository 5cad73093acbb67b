#!/usr/bin/env bash
# Times `ferrolb plan` as a whole process (read, parse, validate, allocate, print) on 10k and
# 100k generated Services into a /12, three runs each; prints wall time and peak memory.
# Usage: scripts/bench-plan.sh [counts...]   (default: 10000 100000)
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release --quiet --bin ferrolb
bin=target/release/ferrolb
work=target/bench-plan
counts=("$@")
[ ${#counts[@]} -gt 0 ] || counts=(10000 100000)
mkdir -p target/bench-results
: > target/bench-results/plan.txt
for n in "${counts[@]}"; do
  dir="$work/$n"
  if [ ! -d "$dir/services" ]; then
    mkdir -p "$dir/pools" "$dir/services"
    printf 'apiVersion: metallb.io/v1beta1\nkind: IPAddressPool\nmetadata:\n  name: bench\nspec:\n  addresses: [10.0.0.0/12]\n---\napiVersion: metallb.io/v1beta1\nkind: L2Advertisement\nmetadata:\n  name: all\n' > "$dir/pools/pools.yaml"
    # 1,000 Services per file keeps each file well under the 4 MiB limit.
    awk -v n="$n" -v dir="$dir/services" 'BEGIN {
      for (i = 0; i < n; i++) {
        f = sprintf("%s/svc-%03d.yaml", dir, int(i / 1000));
        printf "---\napiVersion: v1\nkind: Service\nmetadata:\n  name: svc%d\n  namespace: ns%d\n  creationTimestamp: \"2026-01-%02dT%02d:%02d:%02dZ\"\nspec:\n  type: LoadBalancer\n  selector: {app: svc%d}\n  ports:\n    - {port: 443, protocol: TCP}\n", i, i % 50, 1 + int(i / 86400), int(i / 3600) % 24, int(i / 60) % 60, i % 60, i > f;
      }
    }'
  fi
  for run in 1 2 3; do
    /usr/bin/time -a -o target/bench-results/plan.txt -f "plan services=$n run=$run wall=%es maxrss=%MKB" \
      "$bin" plan --config "$dir/pools" --services "$dir/services" --format json > /dev/null
  done
cat target/bench-results/plan.txt
done
cat target/bench-results/plan.txt
