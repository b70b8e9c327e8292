#!/usr/bin/env bash
# The one test command (README, .ci/run): installs what the tests need, then
# checks formatting and lints, and runs the Rust and Python suites.
set -euo pipefail
cd "$(dirname "$0")/.."

bash tests/install-deps.sh

echo "== cargo fmt --check"
cargo fmt --all -- --check
echo "== cargo clippy"
cargo clippy --all-targets --locked -- -D warnings
echo "== cargo test"
cargo test --all-targets --locked
if [ -d tests/python ]; then
    echo "== pytest (paho-mqtt)"
    SLUICE_BIN="$PWD/target/debug/sluice" python3 -m pytest -q tests/python
fi
