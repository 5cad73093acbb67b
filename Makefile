# ferrolb's task runner. `make demo` runs the lab demo (root), `make test` runs every test CI
# runs, `make bench` and `make bench-lab` the benchmarks.
CARGO ?= cargo

.PHONY: demo test deps lint unit bench bench-lab fuzz validate-examples

test: lint unit

# The whole system in a lab of network namespaces on this machine (root): etcd, the reconciler
# on examples/, three speakers, a client; shows who answers, fails one node over, cleans up.
demo: deps
	$(CARGO) build --release --workspace --bins
	./target/release/ferrolb-lab-bench demo

deps:
	./scripts/install-deps.sh

lint: deps
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --workspace --all-targets --locked -- -D warnings

unit: deps
	$(CARGO) test --workspace --locked

validate-examples:
	$(CARGO) run --quiet --bin ferrolb -- validate --strict examples/pools

bench:
	$(CARGO) bench -p ferrolb-core
	./scripts/bench-plan.sh

# Real speakers in a network lab (root): failover, handover, reply latency, CPU, memory, etcd writes.
bench-lab: deps
	$(CARGO) build --release -p ferrolb-speaker -p ferrolb-bench
	./target/release/ferrolb-lab-bench run

# Each fuzz target for FUZZ_SECONDS (default 60) with cargo-fuzz (installed if missing).
fuzz:
	./scripts/fuzz.sh
