# ferrolb's task runner. `make demo` runs the lab demo (once it exists), `make test` runs every
# test CI runs, `make bench` runs the benchmarks.
CARGO ?= cargo

.PHONY: test deps lint unit bench validate-examples

test: lint unit

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
