#!/usr/bin/env bash
# The whole story in one command: simulated sensors publish over mutual TLS,
# Sluice bridges their readings (reshaped with jq) into Kafka and the hot
# ones to a webhook, and a browser dashboard shows them live over WSS.
#
#   bash examples/demo.sh              # until Ctrl-C
#   bash examples/demo.sh --smoke 10   # run 10 s, check that data reached
#                                      # Kafka and the webhook, exit 0
#
# It builds the broker and the two examples (cargo build), generates a
# throw-away CA and certificates, and starts, each in the background with
# its log in a temporary directory:
#   - tansu, a Kafka-protocol broker in memory (tests/install-deps.sh
#     installs it), with the topic `telemetry`;
#   - examples/demo/http_receiver.py, the webhook;
#   - sluice with examples/demo/sluice.toml (TCP 1883, TLS 8883, WSS 8083,
#     WS 9001, admin and dashboard 8080);
#   - examples/kafka_tail.rs, printing what arrives in Kafka ([kafka] lines);
#   - examples/sensor_sim.rs over TLS with a client certificate.
# Ctrl-C (or SIGTERM) stops all of them, waits for them, and removes the
# temporary directory; nothing is left running.
#
# Options:
#   --sensors N     simulated sensors (default 6)
#   --rate R        readings per second per sensor (default 1)
#   --smoke SECS    run SECS seconds, check, stop; implies --free-ports
#   --free-ports    use free ports instead of the fixed ones above
#   --no-build      do not run cargo; use SLUICE_BIN, SENSOR_SIM_BIN,
#                   KAFKA_TAIL_BIN or target/debug/{sluice,examples/...}
#   --keep          keep the temporary directory (logs, certificates)
set -euo pipefail

REPO=$(cd "$(dirname "$0")/.." && pwd)
SENSORS=6
RATE=1
SMOKE=0
FREE_PORTS=0
BUILD=1
KEEP=0

usage() {
    sed -n '2,/^set -euo/p' "$0" | sed -e '$d' -e 's/^# \{0,1\}//' >&2
    exit 2
}
while [ $# -gt 0 ]; do
    case $1 in
        --sensors) SENSORS=$2; shift 2 ;;
        --rate) RATE=$2; shift 2 ;;
        --smoke) SMOKE=$2; FREE_PORTS=1; shift 2 ;;
        --free-ports) FREE_PORTS=1; shift ;;
        --no-build) BUILD=0; shift ;;
        --keep) KEEP=1; shift ;;
        -h|--help) usage ;;
        *) echo "demo.sh: unknown option $1" >&2; usage ;;
    esac
done

say() { printf '\033[1m[demo]\033[0m %s\n' "$*"; }
die() { printf '[demo] error: %s\n' "$*" >&2; exit 1; }

for tool in tansu openssl python3 curl; do
    command -v $tool >/dev/null 2>&1 ||
        die "$tool not found (bash tests/install-deps.sh installs what the demo needs)"
done

TARGET=${CARGO_TARGET_DIR:-$REPO/target}/debug
if [ $BUILD = 1 ]; then
    say "building sluice, sensor_sim and kafka_tail (cargo build)"
    (cd "$REPO" && cargo build --quiet --workspace --bin sluice --example sensor_sim --example kafka_tail)
fi
SLUICE_BIN=${SLUICE_BIN:-$TARGET/sluice}
SENSOR_SIM_BIN=${SENSOR_SIM_BIN:-$TARGET/examples/sensor_sim}
KAFKA_TAIL_BIN=${KAFKA_TAIL_BIN:-$TARGET/examples/kafka_tail}
for bin in "$SLUICE_BIN" "$SENSOR_SIM_BIN" "$KAFKA_TAIL_BIN"; do
    [ -x "$bin" ] || die "$bin not found (run without --no-build, or cargo build --examples)"
done

WORK=$(mktemp -d "${TMPDIR:-/tmp}/sluice-demo.XXXXXX")
PIDS=()

# Stops everything started, newest first (the sensors before the broker,
# the broker before Kafka), each politely (SIGTERM) and, after 10 s, for
# good (SIGKILL); waits for all so that nothing outlives the script.
cleanup() {
    trap - INT TERM EXIT
    local pid i j
    for ((i = ${#PIDS[@]} - 1; i >= 0; i--)); do
        pid=${PIDS[i]}
        kill -TERM "$pid" 2>/dev/null || continue
        for ((j = 0; j < 100; j++)); do
            kill -0 "$pid" 2>/dev/null || break
            sleep 0.1
        done
        kill -KILL "$pid" 2>/dev/null || true
    done
    wait 2>/dev/null || true
    if [ $KEEP = 1 ]; then
        say "logs and certificates kept in $WORK"
    else
        rm -rf "$WORK"
    fi
    say "stopped"
}
trap 'echo; cleanup; exit 130' INT
trap 'cleanup; exit 143' TERM
trap cleanup EXIT

free_port() {
    python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}
port_free() {
    ! (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null
}
# Polls `$@` every 0.1 s for up to $TIMEOUT s.
wait_until() {
    local what=$1 i
    shift
    for ((i = 0; i < TIMEOUT * 10; i++)); do
        "$@" && return 0
        sleep 0.1
    done
    die "$what did not happen within $TIMEOUT s (logs in $WORK; --keep keeps them)"
}
TIMEOUT=30
# Starts a child in the background, in a session of its own so that the
# terminal's Ctrl-C reaches only this script (which then stops the children
# in order), with its output in LOG and on our stdout behind [TAG].
start() {
    local tag=$1 log=$2
    shift 2
    setsid "$@" > >(tee -a "$log" | sed -u "s/^/[$tag] /") 2>&1 </dev/null &
    PIDS+=($!)
}
# Quietly: the output only in LOG.
start_quiet() {
    local log=$1
    shift
    setsid "$@" >>"$log" 2>&1 </dev/null &
    PIDS+=($!)
}

say "work directory $WORK"
cd "$WORK"
bash "$REPO/certs/generate.sh" certs

# Ports: the fixed ones of examples/demo/sluice.toml, or free ones.
KAFKA_PORT=9092
if [ $FREE_PORTS = 1 ]; then
    KAFKA_PORT=$(free_port)
else
    for p in 1883 8883 8083 9001 8080 9092 9000; do
        port_free $p || die "port $p is in use (stop what uses it, or run with --free-ports)"
    done
fi

say "starting tansu (Kafka protocol, in memory) on 127.0.0.1:$KAFKA_PORT"
start_quiet tansu.log tansu broker --listener-url "tcp://127.0.0.1:$KAFKA_PORT" \
    --advertised-listener-url "tcp://127.0.0.1:$KAFKA_PORT" \
    --storage-engine memory://tansu/
wait_until "tansu listening" bash -c "exec 3<>/dev/tcp/127.0.0.1/$KAFKA_PORT" 2>/dev/null
tansu topic create --broker "tcp://127.0.0.1:$KAFKA_PORT" --partitions 3 telemetry >>tansu.log 2>&1 ||
    die "could not create the Kafka topic (see $WORK/tansu.log)"

HTTP_PORT=9000
[ $FREE_PORTS = 1 ] && HTTP_PORT=0
start http http.log python3 -u "$REPO/examples/demo/http_receiver.py" $HTTP_PORT
wait_until "the webhook receiver listening" grep -qs '^listening on' http.log
HTTP_PORT=$(sed -n 's/^listening on .*:\([0-9]*\)$/\1/p' http.log)

# The demo configuration, with the ports and sinks of this run.
sed -e "s#127.0.0.1:9092#127.0.0.1:$KAFKA_PORT#" \
    -e "s#http://127.0.0.1:9000/#http://127.0.0.1:$HTTP_PORT/#" \
    "$REPO/examples/demo/sluice.toml" >sluice.toml
if [ $FREE_PORTS = 1 ]; then
    sed -i -E 's#^bind = "127\.0\.0\.1:[0-9]+"#bind = "127.0.0.1:0"#' sluice.toml
fi
"$SLUICE_BIN" check-config sluice.toml >/dev/null

say "starting sluice"
RUST_LOG=${RUST_LOG:-info} start_quiet sluice.log "$SLUICE_BIN" --config "$WORK/sluice.toml"
SLUICE_PID=${PIDS[-1]}
wait_until "sluice started" grep -q 'sluice started' sluice.log
port_of() {
    sed -n -E "s/.*listening protocol=\"?$1\"? addr=127\.0\.0\.1:([0-9]+).*/\1/p" sluice.log | head -n 1
}
TCP_PORT=$(port_of tcp)
TLS_PORT=$(port_of tls)
WSS_PORT=$(port_of wss)
ADMIN_PORT=$(port_of admin)

start kafka kafka.log "$KAFKA_TAIL_BIN" --bootstrap "127.0.0.1:$KAFKA_PORT" --topic telemetry
start sensors sensors.log "$SENSOR_SIM_BIN" --host 127.0.0.1 --port "$TLS_PORT" \
    --cafile "$WORK/certs/ca.pem" --cert "$WORK/certs/client.pem" --key "$WORK/certs/client.key" \
    --count "$SENSORS" --rate "$RATE" --drain-timeout 2
say "pids: ${PIDS[*]}"

cat <<EOF

  Dashboard:  http://127.0.0.1:$ADMIN_PORT/dashboard/
              (live over wss://127.0.0.1:$WSS_PORT/mqtt; the browser must accept the demo
               certificate: open https://127.0.0.1:$WSS_PORT/ once, or it falls back to ws)
  MQTT:       mosquitto_sub -h 127.0.0.1 -p $TCP_PORT -t 'sensors/#' -v
  Metrics:    curl -s http://127.0.0.1:$ADMIN_PORT/metrics | grep sluice_bridge_delivered
  Bridges:    curl -s http://127.0.0.1:$ADMIN_PORT/api/v1/bridges
  Kafka:      127.0.0.1:$KAFKA_PORT, topic telemetry ([kafka] lines below)
  Webhook:    POSTs for readings above 25 °C ([http] lines below)
  Logs:       $WORK

EOF

if [ "$SMOKE" != 0 ]; then
    say "smoke test: running $SMOKE s"
    for ((i = 0; i < SMOKE; i++)); do
        sleep 1 &
        wait $! || true
        kill -0 "$SLUICE_PID" 2>/dev/null || die "sluice exited; its log: $(tail -n 20 sluice.log)"
    done
    # Data reached Kafka, reshaped by the jq transform.
    delivered=$(curl -fsS "http://127.0.0.1:$ADMIN_PORT/metrics" |
        sed -n -E 's/^sluice_bridge_delivered_total\{bridge="telemetry"\} ([0-9]+).*/\1/p')
    [ "${delivered:-0}" -gt 0 ] || die "smoke: the telemetry bridge delivered nothing to Kafka"
    TIMEOUT=15
    wait_until "a transformed record read back from Kafka" \
        bash -c "'$KAFKA_TAIL_BIN' --bootstrap 127.0.0.1:$KAFKA_PORT --topic telemetry --max 1 --timeout 10 2>/dev/null | grep -q '\"device\":\"sensor-'"
    grep -q '^POST /alerts/site-' http.log || die "smoke: the webhook received nothing"
    # Read whole first: `grep -q` stops at the match, and under pipefail the
    # curl it cut off (exit 23) would fail the check.
    page=$(curl -fsS "http://127.0.0.1:$ADMIN_PORT/dashboard/") || page=""
    grep -q 'mqtt-ws.js' <<<"$page" || die "smoke: the dashboard page did not load"
    dash_config=$(curl -fsS "http://127.0.0.1:$ADMIN_PORT/dashboard/config.json") || dash_config=""
    grep -q "\"port\":$WSS_PORT" <<<"$dash_config" ||
        die "smoke: config.json does not name the WSS listener"
    say "smoke OK: $delivered records delivered to Kafka, $(grep -c '^POST' http.log) webhook calls"
    exit 0
fi

say "running; Ctrl-C stops everything"
while kill -0 "$SLUICE_PID" 2>/dev/null; do
    sleep 1 &
    wait $! || true
done
die "sluice exited; its log: $(tail -n 20 sluice.log)"
