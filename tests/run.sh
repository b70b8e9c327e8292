#!/usr/bin/env bash
# The one test command (README, .ci/run): installs what the tests need, then
# checks formatting and lints, and runs the Rust and Python suites.
set -euo pipefail
cd "$(dirname "$0")/.."

bash tests/install-deps.sh

# A fresh clone builds everything once: incremental caches only cost disk.
if [ "${CI:-}" = true ]; then
    export CARGO_INCREMENTAL=0
fi

echo "== cargo fmt --check"
cargo fmt --all -- --check
echo "== no aws-lc in the tree (TLS uses ring)"
if cargo tree --workspace --locked -i aws-lc-sys >/dev/null 2>&1; then
    echo "aws-lc-sys is in the dependency tree" >&2
    exit 1
fi
echo "== cargo clippy"
cargo clippy --workspace --all-targets --locked -- -D warnings
echo "== cargo build (binaries and examples the tests run)"
cargo build --workspace --bins --examples --locked
echo "== cargo test"
cargo test --workspace --all-targets --locked
echo "== codec fuzz target (bounded: ${SLUICE_FUZZ_SECS:-60} s)"
# The decoder on arbitrary bytes, as a connection sees them (fuzz/README.md).
# Its corpus starts from the committed seeds in a scratch directory, so a
# run depends on nothing left behind; a crash fails the run and leaves its
# input in fuzz/artifacts/.
fuzz_corpus="$(mktemp -d)"
(cd fuzz && RUSTC_BOOTSTRAP=1 cargo fuzz run decode_packet --sanitizer none \
    "$fuzz_corpus" seeds/decode_packet -- \
    -max_total_time="${SLUICE_FUZZ_SECS:-60}" 2>&1 | tail -n 30)
rm -rf "$fuzz_corpus"
if [ -d tests/python ]; then
    echo "== pytest (paho-mqtt)"
    SLUICE_BIN="$PWD/target/debug/sluice" python3 -m pytest -q tests/python
    echo "== pytest (paho-mqtt) against a node of a three-node cluster"
    # The same interoperability tests, each against node 0 of a fresh
    # three-node cluster on a shared three-server NATS (conftest.py).
    SLUICE_TEST_CLUSTER=1 SLUICE_BIN="$PWD/target/debug/sluice" python3 -m pytest -q \
        tests/python/test_connect.py tests/python/test_pubsub.py \
        tests/python/test_v5.py tests/python/test_transports.py
fi
