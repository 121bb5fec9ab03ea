# The two commands a newcomer needs: `make run` and `make test`. Both install what they need.
.PHONY: setup run test bench wasm

setup:
	@bash scripts/setup.sh

# Builds every crate's wasm32 target that must run in the browser.
wasm: setup
	cargo build -p trickle-channel --target wasm32-unknown-unknown --release

test: setup
	cargo fmt --all -- --check
	cargo clippy --workspace --all-targets -- -D warnings
	cargo test --workspace
	$(MAKE) --no-print-directory wasm

bench: setup
	cargo bench -p trickle-channel --bench payments

run: setup
	cargo test -p trickle-channel --test lifecycle -- --nocapture
