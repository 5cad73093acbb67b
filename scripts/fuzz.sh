#!/usr/bin/env bash
# Runs every fuzz target in fuzz/ for FUZZ_SECONDS (default 60) each, with AddressSanitizer.
#
#   scripts/fuzz.sh                 # all targets, 60 s each
#   FUZZ_SECONDS=600 scripts/fuzz.sh frame
#   FUZZ_SANITIZER=none scripts/fuzz.sh   # where ASan is not available
#
# cargo-fuzz needs nightly-only flags (-Zsanitizer, ...); RUSTC_BOOTSTRAP=1 lets the stable
# toolchain accept them. Runs start from the seeds below; corpora grow in fuzz/corpus/<target>,
# crashes land in fuzz/artifacts/<target> (both ignored by git). A crash stops the run with
# libFuzzer's exit code: fix it and add the input as a regression test in core, named after what
# broke.
set -euo pipefail
cd "$(dirname "$0")/../fuzz"

if ! cargo fuzz --version >/dev/null 2>&1; then
  cargo install cargo-fuzz --locked
fi

export RUSTC_BOOTSTRAP=1
seconds="${FUZZ_SECONDS:-60}"
sanitizer="${FUZZ_SANITIZER:-address}"

targets=("$@")
if [ ${#targets[@]} -eq 0 ]; then
  mapfile -t targets < <(cargo fuzz list)
fi

# Seed inputs, read but never written: byte fixtures of real frames, the example files.
seeds_for() {
  case "$1" in
    frame) echo seeds/frame ;;
    config_yaml) echo ../examples/pools ;;
    service_manifest) echo ../examples/services ;;
  esac
}

for target in "${targets[@]}"; do
  echo "== fuzz $target for ${seconds}s (sanitizer: $sanitizer)" >&2
  mkdir -p "corpus/$target"
  corpora=("corpus/$target")
  seeds="$(seeds_for "$target")"
  if [ -n "$seeds" ] && [ -d "$seeds" ]; then
    corpora+=("$seeds")
  fi
  cargo fuzz run --sanitizer "$sanitizer" "$target" "${corpora[@]}" -- -max_total_time="$seconds"
done
