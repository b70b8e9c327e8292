#!/usr/bin/env python3
"""Edge-to-cloud MQTT bridges under the same faults: Sluice's MQTT bridge
against Mosquitto's own bridge, both forwarding to a Mosquitto remote on
127.0.0.1, counting what an acknowledged publish turns into on the remote.

    python3 examples/bench/mqtt_bridge_faults.py [--messages 5000] [--stop-seconds 20]
        [--refuse-seconds 8] [--only sluice|mosquitto] [--protocol 5|4] [--keep]

Per setup: a remote Mosquitto (persistence on) with a subscriber (persistent
session, QoS 2, `cloud/#`, subscribed before the run), an edge (Sluice, or
Mosquitto with `connection cloud`), and a publisher sending `m<i>` to
`site/q<qos>/dev` at QoS 1 and 2 (alternating), paced so the publishing
spans the faults, counting only what the edge acknowledged (PUBACK or
PUBCOMP). While it publishes, in this order:

  1. the remote SIGSTOPped for --stop-seconds, then SIGCONT;
  2. the remote SIGTERMed and started again (same port and persistence);
  3. the edge SIGKILLed and started again (same data dir / persistence);
  4. the remote stopped for --refuse-seconds (its port refuses), then started.

Then it waits for the remote subscriber to get everything (at most
--drain-seconds, or until nothing arrived for --idle-seconds) and prints a
markdown table per setup and QoS: acknowledged by the edge, received by the
remote's subscriber (distinct), lost (acknowledged, never received),
duplicates (a second copy the remote sent as a new message, DUP clear: the
remote got the message twice from the bridge) and remote redeliveries (a
copy the remote resent to its subscriber itself: DUP set, or a QoS 2
packet id still awaiting PUBREL; not the bridge's doing).

The remote runs with `max_inflight_messages 0` (no limit; --remote-inflight
to change): with its default (20), a mosquitto 2.0.11 remote fed by
Mosquitto's bridge never passes on to its subscriber a large share of the
QoS 1 messages of the backlog sent after the SIGSTOP (its log shows every
PUBLISH received from the bridge, no "dropped" line, and fewer PUBLISHes
sent to the subscriber), which would be counted against the bridge. Fed by
Sluice's bridge, the same remote lost none.

The test clients are a tiny MQTT 3.1.1 client on raw sockets (so that every
PUBLISH, its DUP flag and packet id are seen, and a publish the edge did not
acknowledge before a crash is dropped, never resent). Needs mosquitto and
target/release/sluice (built if missing). Bounded: every process it started
is killed on the way out, errors included.
"""

import argparse
import json
import os
import shutil
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
SLUICE = os.path.join(ROOT, "target", "release", "sluice")
MOSQUITTO = "/usr/sbin/mosquitto" if os.path.exists("/usr/sbin/mosquitto") else "mosquitto"

T0 = time.time()


def log(msg):
    print(f"[{time.time() - T0:7.1f}s] {msg}", flush=True)


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_port(port, proc, timeout=15):
    deadline = time.time() + timeout
    while time.time() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"{proc.args[0]} exited with {proc.returncode}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"nothing listens on {port}")


# ---------------------------------------------------------------- MQTT 3.1.1

def mqtt_str(s):
    b = s.encode()
    return struct.pack("!H", len(b)) + b


def packet(first, body):
    n, out = len(body), bytearray([first])
    while True:
        byte, n = n % 128, n // 128
        out.append(byte | (0x80 if n else 0))
        if not n:
            return bytes(out) + body


def read_exact(sock, n):
    buf = bytearray()
    while len(buf) < n:
        chunk = sock.recv(n - len(buf))
        if not chunk:
            raise ConnectionError("closed")
        buf += chunk
    return bytes(buf)


def read_packet(sock):
    first = read_exact(sock, 1)[0]
    mult, length = 1, 0
    while True:
        b = read_exact(sock, 1)[0]
        length += (b & 0x7F) * mult
        mult *= 128
        if not b & 0x80:
            break
    return first, read_exact(sock, length)


def connect(port, client_id, clean, timeout=3):
    """A connected socket and the CONNACK's session-present flag."""
    sock = socket.create_connection(("127.0.0.1", port), timeout=timeout)
    try:
        flags = 0x02 if clean else 0
        sock.sendall(packet(0x10, mqtt_str("MQTT") + bytes([4, flags]) + struct.pack("!H", 0)
                            + mqtt_str(client_id)))
        first, body = read_packet(sock)
        if first >> 4 != 2 or body[1] != 0:
            raise ConnectionError(f"CONNACK {first:#x} {body!r}")
        sock.settimeout(None)
        return sock, bool(body[0] & 1)
    except Exception:
        sock.close()
        raise


def ack(kind, pid):
    return packet(kind, struct.pack("!H", pid))


# ---------------------------------------------------------------- processes

class Proc:
    """A broker process started, stopped and restarted on one config."""

    def __init__(self, name, argv, port, logfile):
        self.name, self.argv, self.port, self.logfile = name, argv, port, logfile
        self.proc = None

    def start(self):
        out = open(self.logfile, "a")
        self.proc = subprocess.Popen(self.argv, stdout=out, stderr=out, start_new_session=True)
        out.close()
        wait_port(self.port, self.proc)

    def signal(self, sig):
        if self.proc is not None and self.proc.poll() is None:
            os.kill(self.proc.pid, sig)

    def stop(self, grace=15):
        """SIGTERM (a graceful stop: mosquitto saves its sessions)."""
        if self.proc is None or self.proc.poll() is not None:
            return
        self.signal(signal.SIGCONT)
        self.signal(signal.SIGTERM)
        try:
            self.proc.wait(timeout=grace)
        except subprocess.TimeoutExpired:
            log(f"{self.name} ignored SIGTERM for {grace}s: SIGKILL")
            self.kill()

    def kill(self):
        if self.proc is not None and self.proc.poll() is None:
            self.signal(signal.SIGCONT)
            self.proc.kill()
            self.proc.wait()


def remote_conf(d, port, verbose, inflight):
    types = "all" if verbose else "error\nlog_type warning\nlog_type notice\nlog_type information"
    return (f"listener {port} 127.0.0.1\nallow_anonymous true\nuser root\n"
            f"persistence true\npersistence_location {d}/\nmax_queued_messages 1000000\nmax_inflight_messages {inflight}\n"
            f"log_dest file {d}/mosquitto.log\nlog_type {types}\n")


def mosquitto_edge_conf(d, port, remote_port, protocol, verbose):
    types = "all" if verbose else "error\nlog_type warning\nlog_type notice\nlog_type information"
    version = "mqttv50" if protocol == 5 else "mqttv311"
    return f"""listener {port} 127.0.0.1
allow_anonymous true
user root
persistence true
persistence_location {d}/
autosave_interval 1
max_queued_messages 1000000
log_dest file {d}/mosquitto.log
log_type {types}

connection cloud
address 127.0.0.1:{remote_port}
remote_clientid edge-1
bridge_protocol_version {version}
cleansession false
keepalive_interval 5
restart_timeout 1 10
topic # out 2 site/ cloud/
"""


def sluice_edge_conf(port, remote_port, protocol):
    return f"""log_level = "info"
sys_interval = 0
[[listeners]]
bind = "127.0.0.1:{port}"

[[bridges]]
name = "cloud"
filters = ["site/#"]
[bridges.sink]
kind = "mqtt"
address = "127.0.0.1:{remote_port}"
protocol = {protocol}
client_id = "edge-1"
topic = "cloud/{{topic.2..}}"
keep_alive_secs = 5
ack_timeout_secs = 3
connect_timeout_secs = 2
"""


# ---------------------------------------------------------------- subscriber

class Subscriber(threading.Thread):
    """The remote's subscriber: persistent session `cloud-sub`, QoS 2 on
    `cloud/#`; records every PUBLISH and reconnects when the remote goes."""

    def __init__(self, port):
        super().__init__(daemon=True)
        self.port = port
        self.lock = threading.Lock()
        self.first = {}        # payload -> arrival count counted as deliveries
        self.dups = {}         # payload -> extra copies with DUP clear
        self.redeliveries = 0  # copies the remote resent itself
        self.arrivals = {}     # payload -> [(seconds, qos, dup, packet id, connection)], for the report
        self.started = time.time()
        self.awaiting_rel = set()
        self.last_arrival = time.time()
        self.sessions = []     # session-present flag at every reconnect
        self.stopping = False
        self.sock = None
        self.subscribed = False

    def connect_once(self):
        sock, present = connect(self.port, "cloud-sub", clean=False)
        if not self.subscribed or not present:
            if self.subscribed:
                log("SUBSCRIBER: the remote lost our session (session present 0): resubscribing")
                self.awaiting_rel.clear()
            sock.sendall(packet(0x82, struct.pack("!H", 1) + mqtt_str("cloud/#") + b"\x02"))
            self.subscribed = True
        self.sessions.append(present)
        self.sock = sock

    def on_publish(self, first, body):
        qos, dup = (first >> 1) & 3, bool(first & 0x08)
        tlen = struct.unpack("!H", body[:2])[0]
        pos = 2 + tlen
        pid = None
        if qos:
            pid = struct.unpack("!H", body[pos:pos + 2])[0]
            pos += 2
        payload = body[pos:].decode()
        with self.lock:
            self.last_arrival = time.time()
            resent = dup or (qos == 2 and pid in self.awaiting_rel)
            self.arrivals.setdefault(payload, []).append(
                (round(time.time() - self.started, 2), qos, int(dup), pid, len(self.sessions)))
            if payload not in self.first:
                self.first[payload] = 1
            elif resent:
                self.redeliveries += 1
            else:
                self.dups[payload] = self.dups.get(payload, 0) + 1
        if qos == 1:
            self.sock.sendall(ack(0x40, pid))
        elif qos == 2:
            self.awaiting_rel.add(pid)
            self.sock.sendall(ack(0x50, pid))

    def run(self):
        while not self.stopping:
            try:
                if self.sock is None:
                    self.connect_once()
                first, body = read_packet(self.sock)
                kind = first >> 4
                if kind == 3:
                    self.on_publish(first, body)
                elif kind == 6:
                    pid = struct.unpack("!H", body[:2])[0]
                    self.awaiting_rel.discard(pid)
                    self.sock.sendall(ack(0x70, pid))
            except (OSError, ConnectionError, ValueError):
                if self.sock is not None:
                    self.sock.close()
                    self.sock = None
                if not self.stopping:
                    time.sleep(0.2)

    def close(self):
        self.stopping = True
        if self.sock is not None:
            try:
                self.sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass


# ---------------------------------------------------------------- publisher

class Publisher:
    """Publishes to the edge, clean session, at most `window` unacknowledged;
    a publish in flight when the connection drops is abandoned (never resent)
    and not counted as acknowledged."""

    def __init__(self, port, window=20):
        self.port, self.window = port, window
        self.cv = threading.Condition()
        self.inflight = {}  # pid -> i
        self.acked = set()
        self.abandoned = set()
        self.sock = None
        self.broken = False
        self.next_pid = 0
        self.reconnects = 0
        self.send_lock = threading.Lock()  # the reader thread sends PUBREL

    def reader(self, sock):
        try:
            while True:
                first, body = read_packet(sock)
                kind = first >> 4
                pid = struct.unpack("!H", body[:2])[0] if len(body) >= 2 else 0
                if kind == 5:
                    with self.send_lock:
                        sock.sendall(ack(0x62, pid))
                elif kind in (4, 7):
                    with self.cv:
                        i = self.inflight.pop(pid, None)
                        if i is not None:
                            self.acked.add(i)
                        self.cv.notify_all()
        except (OSError, ConnectionError):
            with self.cv:
                if self.sock is sock:
                    self.broken = True
                self.cv.notify_all()

    def ensure_connected(self, deadline):
        while self.sock is None or self.broken:
            with self.cv:
                if self.sock is not None:
                    self.sock.close()
                    self.sock = None
                self.abandoned.update(self.inflight.values())
                self.inflight.clear()
                self.broken = False
            if time.time() > deadline:
                raise RuntimeError("the edge did not come back")
            try:
                sock, _ = connect(self.port, "sensor", clean=True)
            except (OSError, ConnectionError):
                time.sleep(0.1)
                continue
            with self.cv:
                self.sock = sock
            self.reconnects += 1
            threading.Thread(target=self.reader, args=(sock,), daemon=True).start()

    def publish(self, i, qos):
        deadline = time.time() + 60
        while True:
            self.ensure_connected(deadline)
            with self.cv:
                while len(self.inflight) >= self.window and not self.broken:
                    self.cv.wait(1)
                if self.broken:
                    continue
                self.next_pid = self.next_pid % 65535 + 1
                while self.next_pid in self.inflight:
                    self.next_pid = self.next_pid % 65535 + 1
                pid = self.next_pid
                self.inflight[pid] = i
                sock = self.sock
            body = mqtt_str(f"site/q{qos}/dev") + struct.pack("!H", pid) + f"m{i}".encode()
            try:
                with self.send_lock:
                    sock.sendall(packet(0x30 | (qos << 1), body))
                return
            except OSError:
                with self.cv:
                    self.broken = True

    def finish(self, within=15):
        deadline = time.time() + within
        with self.cv:
            while self.inflight and not self.broken and time.time() < deadline:
                self.cv.wait(0.5)
            self.abandoned.update(self.inflight.values())
            self.inflight.clear()
            if self.sock is not None:
                try:
                    self.sock.sendall(b"\xe0\x00")
                except OSError:
                    pass
                self.sock.close()
                self.sock = None


# ---------------------------------------------------------------- one setup

def planned_seconds(a):
    return 3 + a.stop_seconds + 5 + 5 + 5 + a.refuse_seconds + 3


def faults(a, remote, edge, events):
    """The fault schedule, relative to the start of publishing."""
    def at(t, what):
        time.sleep(max(0.0, start + t - time.time()))
        events.append((round(time.time() - start, 1), what))
        log(f"fault: {what}")

    start = time.time()
    try:
        schedule(a, remote, edge, at)
    except Exception as e:  # noqa: BLE001 (reported, the run goes on to count)
        events.append((round(time.time() - start, 1), f"FAULT SCHEDULE FAILED: {e!r}"))
        log(f"fault schedule failed: {e!r}")


def schedule(a, remote, edge, at):
    t = 3
    at(t, f"remote SIGSTOP for {a.stop_seconds}s")
    remote.signal(signal.SIGSTOP)
    t += a.stop_seconds
    at(t, "remote SIGCONT")
    remote.signal(signal.SIGCONT)
    t += 5
    at(t, "remote SIGTERM + restart")
    remote.stop()
    remote.start()
    t += 5
    at(t, "edge SIGKILL + restart")
    edge.kill()
    time.sleep(1)
    edge.start()
    t += 5
    at(t, f"remote stopped, port refusing for {a.refuse_seconds}s")
    remote.stop()
    time.sleep(a.refuse_seconds)
    remote.start()
    at(t, "remote back")


def sluice_status(admin):
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{admin}/api/v1/bridges/cloud", timeout=5) as r:
            return r.read().decode()
    except OSError as e:
        return f"(status unavailable: {e})"


def sluice_buffered(admin):
    """Records the Sluice edge's bridge still holds (None if it cannot say)."""
    try:
        return json.loads(sluice_status(admin)).get("buffered_records")
    except ValueError:
        return None


def run_setup(kind, a, workdir):
    d = os.path.join(workdir, kind)
    rdir, edir = os.path.join(d, "remote"), os.path.join(d, "edge")
    os.makedirs(rdir)
    os.makedirs(edir)
    rport, eport, admin = free_port(), free_port(), free_port()
    with open(os.path.join(rdir, "mosquitto.conf"), "w") as f:
        f.write(remote_conf(rdir, rport, a.verbose_logs, a.remote_inflight))
    remote = Proc("remote", [MOSQUITTO, "-c", os.path.join(rdir, "mosquitto.conf")], rport,
                  os.path.join(rdir, "stdout.log"))
    if kind == "sluice":
        conf = sluice_edge_conf(eport, rport, a.protocol)
        path = os.path.join(edir, "sluice.toml")
        argv = [SLUICE, "--config", path, "--data-dir", os.path.join(edir, "data"),
                "--admin-bind", f"127.0.0.1:{admin}"]
    else:
        conf = mosquitto_edge_conf(edir, eport, rport, a.protocol, a.verbose_logs)
        path = os.path.join(edir, "mosquitto.conf")
        argv = [MOSQUITTO, "-c", path]
    with open(path, "w") as f:
        f.write(conf)
    edge = Proc("edge", argv, eport, os.path.join(edir, "stdout.log"))
    sub = pub = None
    events = []
    try:
        remote.start()
        sub = Subscriber(rport)
        sub.connect_once()
        time.sleep(0.3)  # the SUBACK is read by the thread; the subscription is in place
        sub.start()
        edge.start()
        pub = Publisher(eport)
        total = 2 * a.messages
        duration = planned_seconds(a)
        rate = total / duration
        log(f"{kind}: edge :{eport} -> remote :{rport}; {total} messages at {rate:.0f}/s over ~{duration:.0f}s")
        fault_thread = threading.Thread(target=faults, args=(a, remote, edge, events), daemon=True)
        start = time.time()
        fault_thread.start()
        for i in range(total):
            time.sleep(max(0.0, start + i / rate - time.time()))
            pub.publish(i, 1 + i % 2)
        pub.finish()
        log(f"{kind}: publishing done in {time.time() - start:.0f}s; "
            f"acknowledged {len(pub.acked)}, abandoned {len(pub.abandoned)}")
        fault_thread.join(timeout=a.stop_seconds + a.refuse_seconds + 120)
        drain_start = time.time()
        while time.time() - drain_start < a.drain_seconds:
            with sub.lock:
                missing = sum(1 for i in pub.acked if f"m{i}" not in sub.first)
                idle = time.time() - sub.last_arrival
            if missing == 0 and idle > 2:
                break
            # Sluice tells what it still holds: no giving up while it holds some
            # (its link and delivery retry with a backoff of up to 30 s).
            buffered = sluice_buffered(admin) if kind == "sluice" else 0
            if idle > a.idle_seconds and not buffered:
                log(f"{kind}: nothing arrived for {idle:.0f}s, {missing} still missing: giving up")
                break
            time.sleep(0.5)
        log(f"{kind}: drained in {time.time() - drain_start:.0f}s")
        status = sluice_status(admin) if kind == "sluice" else None
        return summarize(kind, pub, sub, total, events, status)
    finally:
        if sub is not None:
            sub.close()
        if pub is not None and pub.sock is not None:
            pub.sock.close()
        edge.kill()
        remote.kill()


def summarize(kind, pub, sub, total, events, status):
    rows = []
    with sub.lock:
        for qos in (1, 2):
            ids = [i for i in range(total) if 1 + i % 2 == qos]
            acked = [i for i in ids if i in pub.acked]
            got = [i for i in ids if f"m{i}" in sub.first]
            lost = sorted(i for i in acked if f"m{i}" not in sub.first)
            dup_ids = sorted(i for i in ids if f"m{i}" in sub.dups)
            dups = sum(sub.dups[f"m{i}"] for i in dup_ids)
            unacked_got = sum(1 for i in got if i not in pub.acked)
            detail = {i: (i in pub.acked, sub.arrivals.get(f"m{i}")) for i in dup_ids[:12]}
            rows.append(dict(kind=kind, qos=qos, sent=len(ids), acked=len(acked), received=len(got),
                             lost=lost, dups=dups, dup_ids=dup_ids, unacked_got=unacked_got, detail=detail))
        redeliveries = sub.redeliveries
        sessions = list(sub.sessions)
    return dict(rows=rows, redeliveries=redeliveries, sessions=sessions, events=events,
                status=status, reconnects=pub.reconnects)


def sample(ids, n=12):
    s = ", ".join(f"m{i}" for i in ids[:n])
    return s + (f", ... ({len(ids)} in all)" if len(ids) > n else "")


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--messages", type=int, default=5000, help="messages per QoS (default 5000)")
    p.add_argument("--stop-seconds", type=float, default=20, help="how long the remote is SIGSTOPped")
    p.add_argument("--refuse-seconds", type=float, default=8, help="how long the remote's port refuses")
    p.add_argument("--drain-seconds", type=float, default=60, help="longest wait for the remote to get all")
    p.add_argument("--idle-seconds", type=float, default=20, help="give up after this long with nothing new")
    p.add_argument("--protocol", type=int, choices=(4, 5), default=5, help="the bridges' MQTT version")
    p.add_argument("--remote-inflight", type=int, default=0,
                   help="the remote's max_inflight_messages (0: no limit; mosquitto's default is 20)")
    p.add_argument("--only", choices=("sluice", "mosquitto"))
    p.add_argument("--keep", action="store_true", help="keep the temp dir (configs, logs, stores)")
    p.add_argument("--verbose-logs", action="store_true", help="mosquitto log_type all")
    a = p.parse_args()
    if not os.path.exists(SLUICE):
        subprocess.run(["cargo", "build", "--release", "--quiet", "--bin", "sluice"], cwd=ROOT, check=True)
    workdir = tempfile.mkdtemp(prefix="sluice-mqtt-faults-")
    results = []
    try:
        for kind in ("sluice", "mosquitto"):
            if a.only in (None, kind):
                results.append(run_setup(kind, a, workdir))
    finally:
        if a.keep:
            print(f"kept {workdir}")
        else:
            shutil.rmtree(workdir, ignore_errors=True)
    print()
    print(f"bridge protocol {a.protocol}; {a.messages} messages per QoS; remote SIGSTOP {a.stop_seconds:g}s; "
          f"remote refusing {a.refuse_seconds:g}s\n")
    print("| edge | QoS | published | acknowledged by the edge | received by the remote subscriber (distinct) "
          "| lost | duplicates (DUP clear) | received but not acknowledged |")
    print("|---|---|---|---|---|---|---|---|")
    for r in results:
        for row in r["rows"]:
            print(f"| {row['kind']} | {row['qos']} | {row['sent']} | {row['acked']} | {row['received']} "
                  f"| {len(row['lost'])} | {row['dups']} | {row['unacked_got']} |")
    print("\nQoS 1 duplicates are within its guarantee (at least once); a QoS 2 duplicate or any loss is not.\n")
    for r in results:
        kind = r["rows"][0]["kind"]
        print(f"{kind}: remote redeliveries to its subscriber (DUP set / QoS 2 id awaiting PUBREL, not "
              f"counted as duplicates): {r['redeliveries']}; subscriber session present at each connect: "
              f"{r['sessions']}; publisher connects: {r['reconnects']}")
        print(f"{kind}: faults at (s since publishing began): {r['events']}")
        for row in r["rows"]:
            if row["lost"]:
                print(f"{kind} QoS {row['qos']} lost: {sample(row['lost'])}")
            if row["dup_ids"]:
                print(f"{kind} QoS {row['qos']} duplicated: {sample(row['dup_ids'])}")
                if row["qos"] == 2:
                    for i, (was_acked, arrivals) in row["detail"].items():
                        print(f"  m{i}: acknowledged by the edge {was_acked}; arrivals (s, qos, dup, packet id, "
                              f"subscriber connection): {arrivals}")
        if r["status"]:
            print(f"{kind}: bridge status {r['status']}")
    bad = [row for r in results for row in r["rows"]
           if row["kind"] == "sluice" and row["qos"] == 2 and (row["lost"] or row["dups"])]
    bad += [row for r in results for row in r["rows"]
            if row["kind"] == "sluice" and row["qos"] == 1 and row["lost"]]
    if bad:
        print("\nSLUICE LOST OR REPEATED MESSAGES IT MUST NOT (see above)")
        sys.exit(1)


if __name__ == "__main__":
    main()
