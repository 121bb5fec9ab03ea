# The two commands a newcomer needs: `make run` and `make test`. Both install what they need.
.PHONY: setup run test checks bench extension fuzz-smoke typescript

setup:
	@bash scripts/setup.sh

# The browser extension, unpacked in dist/extension/ (Chrome) and dist/firefox/, each zipped.
extension: setup
	bash scripts/build-extension.sh

# Rewrites extension/src/shared/generated/ from the Rust types that cross to the extension's pages
# (crates/wasm/src/typescript.rs; `make test` fails while it is stale).
typescript:
	TRICKLE_WRITE_TYPESCRIPT=1 cargo test -q -p trickle-wasm --lib typescript

# Every check, beside a throwaway PostgreSQL so the payee's store tests run against it too.
test: setup
	bash scripts/with-postgres.sh $(MAKE) --no-print-directory checks

checks:
	cargo fmt --all -- --check
	cargo clippy --workspace --all-targets -- -D warnings
	# Two runs: trickle-channel's tests check scripts with libbitcoinconsensus (Core 25) while
	# trickle-regtest links libbitcoinkernel (Core 31); one test binary cannot hold both.
	cargo test -p trickle-channel
	cargo test --workspace --exclude trickle-channel
	cargo clippy -p trickle-wasm -p trickle-node --target wasm32-unknown-unknown -- -D warnings
	# The extension's pure modules (rule book, formatting) in Node, then the extension in
	# Chromium and Firefox against the local chain and the payee proxy (tests/browser/); the
	# Firefox build passes Mozilla's linter first.
	npm run test:extension
	bash scripts/build-extension.sh
	npm run lint:firefox
	cargo build -p trickle-regtest -p trickle-payee -p trickle-cli
	npm run test:browser
	# An unmodified @x402/express app paid through the payee's facilitator by `trickle fetch`
	# and by @x402/fetch with the Node payer (the wallet in wasm, packages/x402-client).
	bash scripts/build-node.sh
	npm run test:x402
	# `make run`'s printed CLI walkthrough, run literally (needs its ports free).
	bash scripts/test-walkthrough.sh
	$(MAKE) --no-print-directory fuzz-smoke

# Each fuzz target for a short time; a crash fails the run (see fuzz/README.md).
FUZZ_SECONDS ?= 20
fuzz-smoke:
	cd fuzz && RUSTC_BOOTSTRAP=1 cargo fuzz build -O
	cd fuzz && for t in wire_message http_headers mpp_headers snapshots payer_payee; do \
		RUSTC_BOOTSTRAP=1 cargo fuzz run -O $$t -- -max_total_time=$(FUZZ_SECONDS) || exit 1; done

# Every benchmark, one table of figures against baselines of the same run (scripts/bench.sh).
bench: setup
	bash scripts/bench.sh

# The local chain, a demo site and the payee proxy in front of it (scripts/run.sh).
run: setup
	bash scripts/run.sh
