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
	# Two runs: trickle-channel's tests check scripts with libbitcoinconsensus (Core 25) while
	# trickle-regtest links libbitcoinkernel (Core 31); one test binary cannot hold both.
	cargo test -p trickle-channel
	cargo test --workspace --exclude trickle-channel
	$(MAKE) --no-print-directory wasm

bench: setup
	cargo bench -p trickle-channel --bench payments

# The local chain (Esplora API on port 3002, kept in .trickle/regtest); the payee server and
# the extension join it as they land.
run: setup
	cargo run -p trickle-regtest -- --port 3002 --datadir .trickle/regtest
