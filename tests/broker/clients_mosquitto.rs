//! Interoperability with the Eclipse Mosquitto command-line clients
//! (`mosquitto_pub`, `mosquitto_sub`), MQTT 3.1, 3.1.1 and 5.0.
//!
//! Every child runs with a bound: `mosquitto_sub` always gets `-W`, every
//! wait has a deadline, and children are killed when their handle drops.
//! Subscribers that must be in place before a publish use a readiness
//! probe: a retained message on a private `ready/N` topic, subscribed to
//! first, whose arrival proves the SUBSCRIBE has been handled.

use std::io::{BufRead, BufReader, Read};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use crate::harness::Sluice;

/// Seconds given to `mosquitto_sub -W` and to every wait on a child.
const WAIT_SECS: u64 = 10;

/// Protocol versions as `-V` spells them.
const V31: &str = "31";
const V311: &str = "311";
const V5: &str = "5";

fn conn_args(port: u16, version: &str) -> Vec<String> {
    ["-h", "127.0.0.1", "-p", &port.to_string(), "-V", version]
        .iter()
        .map(|s| s.to_string())
        .collect()
}

/// A child process killed (SIGKILL) and reaped when dropped.
struct Proc {
    child: Child,
    name: &'static str,
}

impl Proc {
    fn spawn(name: &'static str, args: &[String]) -> Proc {
        let child = Command::new(name)
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("spawn {name} (run tests/install-deps.sh): {e}"));
        Proc { child, name }
    }

    /// Waits for the exit, killing the child and panicking after `secs`.
    fn wait(&mut self, secs: u64) -> ExitStatus {
        let deadline = Instant::now() + Duration::from_secs(secs);
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status;
            }
            if Instant::now() >= deadline {
                let _ = self.child.kill();
                panic!("{} did not exit within {secs} s", self.name);
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    fn stderr(&mut self) -> String {
        let mut s = String::new();
        if let Some(mut e) = self.child.stderr.take() {
            let _ = e.read_to_string(&mut s);
        }
        s
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// What a finished `mosquitto_pub` left.
struct PubResult {
    status: ExitStatus,
    stderr: String,
}

/// Runs `mosquitto_pub` to completion (bounded) and returns its status.
fn try_publish(port: u16, version: &str, args: &[&str]) -> PubResult {
    let mut all = conn_args(port, version);
    all.extend(args.iter().map(|s| s.to_string()));
    let mut p = Proc::spawn("mosquitto_pub", &all);
    let status = p.wait(WAIT_SECS);
    PubResult {
        status,
        stderr: p.stderr(),
    }
}

/// Runs `mosquitto_pub` and asserts it succeeded.
fn publish(port: u16, version: &str, args: &[&str]) {
    let r = try_publish(port, version, args);
    assert!(
        r.status.success(),
        "mosquitto_pub {args:?} failed: {:?} {}",
        r.status,
        r.stderr
    );
}

static READY_TOPICS: AtomicUsize = AtomicUsize::new(0);

/// A running `mosquitto_sub` whose stdout is read line by line.
struct Sub {
    proc: Proc,
    lines: mpsc::Receiver<String>,
}

impl Sub {
    /// Starts `mosquitto_sub` with `args` plus `-W` (and `-C count`). No
    /// readiness wait.
    fn spawn(port: u16, version: &str, args: &[&str], count: Option<usize>) -> Sub {
        let mut all = conn_args(port, version);
        all.extend(args.iter().map(|s| s.to_string()));
        all.extend(["-W".to_string(), WAIT_SECS.to_string()]);
        if let Some(n) = count {
            all.extend(["-C".to_string(), n.to_string()]);
        }
        let mut proc = Proc::spawn("mosquitto_sub", &all);
        let stdout = proc.child.stdout.take().unwrap();
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        Sub { proc, lines: rx }
    }

    /// Starts `mosquitto_sub` and returns once its subscriptions are in
    /// place: it also subscribes (first) to a private topic holding a
    /// retained "ready" message and waits for that line. `count` excludes
    /// the probe line, which is not returned by `lines`.
    fn ready(port: u16, version: &str, args: &[&str], count: Option<usize>) -> Sub {
        let n = READY_TOPICS.fetch_add(1, Ordering::Relaxed);
        let topic = format!("ready/{n}");
        publish(port, V311, &["-t", &topic, "-m", "ready", "-r", "-q", "1"]);
        let mut all: Vec<&str> = vec!["-t", &topic];
        all.extend_from_slice(args);
        let mut sub = Sub::spawn(port, version, &all, count.map(|c| c + 1));
        let first = sub.next_line();
        assert!(
            first.as_deref().is_some_and(|l| l.contains("ready")),
            "mosquitto_sub {args:?} not ready, first line {first:?}, stderr {:?}",
            sub.proc.stderr()
        );
        sub
    }

    /// The next line within the wait bound.
    fn next_line(&mut self) -> Option<String> {
        self.lines.recv_timeout(Duration::from_secs(WAIT_SECS)).ok()
    }

    /// Waits for the exit (after `-C` messages or the `-W` timeout) and
    /// returns the exit status and every line printed (probe excluded).
    fn finish(mut self) -> (ExitStatus, Vec<String>) {
        let status = self.proc.wait(WAIT_SECS + 5);
        let mut out = Vec::new();
        // The reader thread ends at EOF, which follows the exit.
        while let Ok(l) = self.lines.recv_timeout(Duration::from_secs(2)) {
            out.push(l);
        }
        (status, out)
    }

    /// Waits for `-C` messages: asserts a clean exit, returns the lines.
    fn output(self) -> Vec<String> {
        let (status, lines) = self.finish();
        assert!(status.success(), "mosquitto_sub: {status:?}, got {lines:?}");
        lines
    }
}

fn strings(v: &[&str]) -> Vec<String> {
    v.iter().map(|s| s.to_string()).collect()
}

#[test]
fn mosquitto_qos_0_1_2_round_trip_and_downgrade() {
    let s = Sluice::start();
    for v in [V31, V311, V5] {
        let sub = Sub::ready(
            s.port,
            v,
            &["-t", "qos/#", "-q", "2", "-F", "%t %q %r %p"],
            Some(3),
        );
        let low = Sub::ready(
            s.port,
            v,
            &["-t", "qos/#", "-q", "1", "-F", "%t %q %p"],
            Some(3),
        );
        for q in ["0", "1", "2"] {
            let topic = format!("qos/{q}");
            let payload = format!("payload at qos {q} over {v}");
            publish(s.port, v, &["-t", &topic, "-m", &payload, "-q", q]);
        }
        // Three separate publishers: MQTT does not order across them.
        let mut got = sub.output();
        got.sort();
        assert_eq!(
            got,
            strings(&[
                &format!("qos/0 0 0 payload at qos 0 over {v}"),
                &format!("qos/1 1 0 payload at qos 1 over {v}"),
                &format!("qos/2 2 0 payload at qos 2 over {v}"),
            ]),
            "-V {v}"
        );
        let mut got = low.output();
        got.sort();
        assert_eq!(
            got,
            strings(&[
                &format!("qos/0 0 payload at qos 0 over {v}"),
                &format!("qos/1 1 payload at qos 1 over {v}"),
                &format!("qos/2 1 payload at qos 2 over {v}"),
            ]),
            "QoS downgraded to the granted 1, -V {v}"
        );
    }
}

#[test]
fn mosquitto_qos1_messages_from_one_publisher_stay_in_order() {
    let s = Sluice::start();
    for v in [V311, V5] {
        let sub = Sub::ready(s.port, v, &["-t", "seq", "-q", "1"], Some(20));
        // -l publishes one message per stdin line over one connection.
        let mut all = conn_args(s.port, v);
        all.extend(strings(&["-t", "seq", "-q", "1", "-l"]));
        let child = Command::new("mosquitto_pub")
            .args(&all)
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn mosquitto_pub");
        let mut p = Proc {
            child,
            name: "mosquitto_pub",
        };
        {
            use std::io::Write;
            let mut stdin = p.child.stdin.take().unwrap();
            for i in 0..20 {
                writeln!(stdin, "m{i}").unwrap();
            }
            // Dropping stdin ends -l input: mosquitto_pub disconnects.
        }
        assert!(p.wait(WAIT_SECS).success());
        let expected: Vec<String> = (0..20).map(|i| format!("m{i}")).collect();
        assert_eq!(sub.output(), expected, "-V {v}");
    }
}

#[test]
fn mosquitto_wildcards_and_dollar_topics() {
    let s = Sluice::start();
    for v in [V311, V5] {
        let sub = Sub::ready(
            s.port,
            v,
            &[
                "-v",
                "-q",
                "1",
                "-t",
                "home/+/temp",
                "-t",
                "office/#",
                "-t",
                "+/x",
                "-t",
                "$app/#",
            ],
            Some(5),
        );
        for (topic, payload) in [
            ("home/kitchen/temp", "21.5"),
            ("home/kitchen/humidity", "40"),   // no match
            ("home/kitchen/temp/extra", "no"), // no match: + is one level
            ("office", "parent"),              // '#' includes the parent level
            ("office/floor1/room2", "deep"),
            ("$app/x", "dollar"), // only $app/#: '+' never matches a $ level
            ("$SYS/x", "sys"),    // clients cannot publish into $SYS
            ("b/x", "plus"),
        ] {
            publish(s.port, v, &["-t", topic, "-m", payload, "-q", "1"]);
        }
        assert_eq!(
            sub.output(),
            strings(&[
                "home/kitchen/temp 21.5",
                "office parent",
                "office/floor1/room2 deep",
                "$app/x dollar",
                "b/x plus",
            ]),
            "-V {v}"
        );
    }
}

#[test]
fn mosquitto_overlapping_subscriptions_deliver_once() {
    let s = Sluice::start();
    for v in [V311, V5] {
        let sub = Sub::ready(
            s.port,
            v,
            &[
                "-F", "%t %q %p", "-t", "ov/#", "-q", "2", "-t", "ov/+", "-q", "2",
            ],
            Some(2),
        );
        publish(s.port, v, &["-t", "ov/a", "-m", "one", "-q", "2"]);
        publish(s.port, v, &["-t", "ov/b", "-m", "two", "-q", "1"]);
        assert_eq!(
            sub.output(),
            strings(&["ov/a 2 one", "ov/b 1 two"]),
            "-V {v}"
        );
    }
}

#[test]
fn mosquitto_retained_message_reaches_later_subscriber_and_is_cleared() {
    let s = Sluice::start();
    for v in [V311, V5] {
        let base = format!("ret{v}");
        let a = format!("{base}/a");
        let b = format!("{base}/b");
        let filter = format!("{base}/#");
        publish(s.port, v, &["-t", &a, "-m", "first", "-r", "-q", "1"]);
        publish(s.port, v, &["-t", &a, "-m", "replaced", "-r", "-q", "1"]);
        publish(s.port, v, &["-t", &b, "-m", "kept", "-r", "-q", "0"]);
        let fmt = ["-F", "%t %r %p", "-q", "1", "-t", &filter];
        let sub = Sub::spawn(s.port, v, &fmt, Some(2));
        assert_eq!(
            sub.output(),
            strings(&[&format!("{a} 1 replaced"), &format!("{b} 1 kept")]),
            "-V {v}"
        );

        // A live message on a subscribed topic does not carry RETAIN.
        let live = Sub::ready(s.port, v, &fmt, Some(3));
        publish(s.port, v, &["-t", &a, "-m", "live", "-r", "-q", "1"]);
        assert_eq!(
            live.output(),
            strings(&[
                &format!("{a} 1 replaced"),
                &format!("{b} 1 kept"),
                &format!("{a} 0 live"),
            ]),
            "-V {v}"
        );

        // -r -n: an empty retained message clears the topic.
        publish(s.port, v, &["-t", &a, "-r", "-n", "-q", "1"]);
        let sub = Sub::spawn(s.port, v, &fmt, Some(1));
        assert_eq!(sub.output(), strings(&[&format!("{b} 1 kept")]), "-V {v}");
    }
}

#[test]
fn mosquitto_will_is_published_when_the_client_is_killed_not_on_clean_exit() {
    let s = Sluice::start();
    for v in [V311, V5] {
        let will_topic = format!("will{v}/status");
        let watcher = Sub::ready(s.port, v, &["-v", "-q", "1", "-t", &will_topic], Some(1));

        // A client that ends normally (DISCONNECT after -C 1): no will.
        let polite = Sub::ready(
            s.port,
            v,
            &[
                "-t",
                "poke",
                "--will-topic",
                &will_topic,
                "--will-payload",
                "polite-will",
                "--will-qos",
                "1",
            ],
            Some(1),
        );
        publish(s.port, v, &["-t", "poke", "-m", "bye", "-q", "1"]);
        assert_eq!(polite.output(), strings(&["bye"]));

        // A client killed with SIGKILL: the broker sees the socket close
        // without DISCONNECT and publishes the will.
        let victim = Sub::ready(
            s.port,
            v,
            &[
                "-t",
                "nothing",
                "--will-topic",
                &will_topic,
                "--will-payload",
                "sensor offline",
                "--will-qos",
                "1",
            ],
            None,
        );
        drop(victim);
        assert_eq!(
            watcher.output(),
            strings(&[&format!("{will_topic} sensor offline")]),
            "-V {v}"
        );
    }
}

#[test]
fn mosquitto_retained_will_reaches_later_subscriber() {
    let s = Sluice::start();
    let victim = Sub::ready(
        s.port,
        V5,
        &[
            "-t",
            "nothing",
            "--will-topic",
            "fleet/7/alive",
            "--will-payload",
            "false",
            "--will-retain",
            "--will-qos",
            "1",
        ],
        None,
    );
    // The broker must see the close before the later subscriber connects;
    // a watcher on the same topic tells us when the will went out.
    let watcher = Sub::ready(s.port, V5, &["-t", "fleet/+/alive", "-q", "1"], Some(1));
    drop(victim);
    assert_eq!(watcher.output(), strings(&["false"]));
    let later = Sub::spawn(s.port, V311, &["-t", "fleet/#", "-F", "%t %r %p"], Some(1));
    assert_eq!(later.output(), strings(&["fleet/7/alive 1 false"]));
}

#[test]
fn mosquitto_v5_publish_properties_are_forwarded() {
    let s = Sluice::start();
    let sub = Sub::ready(
        s.port,
        V5,
        &["-t", "props/#", "-q", "1", "-F", "%t|%P|%C|%R|%D|%F|%E|%p"],
        Some(2),
    );
    publish(
        s.port,
        V5,
        &[
            "-t",
            "props/full",
            "-m",
            "{\"t\":21.5}",
            "-q",
            "1",
            "-D",
            "publish",
            "user-property",
            "site",
            "lyon",
            "-D",
            "publish",
            "user-property",
            "unit",
            "celsius",
            "-D",
            "publish",
            "content-type",
            "application/json",
            "-D",
            "publish",
            "response-topic",
            "reply/here",
            "-D",
            "publish",
            "correlation-data",
            "req-42",
            "-D",
            "publish",
            "payload-format-indicator",
            "1",
            "-D",
            "publish",
            "message-expiry-interval",
            "3600",
        ],
    );
    publish(s.port, V5, &["-t", "props/none", "-m", "plain", "-q", "1"]);
    assert_eq!(
        sub.output(),
        strings(&[
            "props/full|site:lyon unit:celsius|application/json|reply/here|req-42|1|3600|{\"t\":21.5}",
            "props/none|||||||plain",
        ])
    );
}

#[test]
fn mosquitto_v5_properties_are_dropped_for_v311_subscribers() {
    let s = Sluice::start();
    let sub = Sub::ready(s.port, V311, &["-t", "p311", "-F", "%t|%P|%C|%p"], Some(1));
    publish(
        s.port,
        V5,
        &[
            "-t",
            "p311",
            "-m",
            "x",
            "-D",
            "publish",
            "user-property",
            "k",
            "v",
            "-D",
            "publish",
            "content-type",
            "text/plain",
        ],
    );
    assert_eq!(sub.output(), strings(&["p311|||x"]));
}

#[test]
fn mosquitto_v5_subscription_identifier_is_shown() {
    let s = Sluice::start();
    let sub = Sub::ready(
        s.port,
        V5,
        &[
            "-t",
            "sid/#",
            "-D",
            "subscribe",
            "subscription-identifier",
            "42",
            "-F",
            "%S %t %p",
        ],
        Some(1),
    );
    publish(s.port, V5, &["-t", "sid/a", "-m", "tagged"]);
    assert_eq!(sub.output(), strings(&["42 sid/a tagged"]));
}

#[test]
fn mosquitto_v5_client_id_takeover_moves_the_subscription() {
    let s = Sluice::start();
    let first = Sub::ready(s.port, V5, &["-i", "dash-1", "-t", "tk", "-q", "1"], None);
    let second = Sub::ready(
        s.port,
        V5,
        &["-i", "dash-1", "-t", "tk", "-q", "1"],
        Some(1),
    );
    // The first connection is closed with DISCONNECT 0x8E: mosquitto_sub
    // exits long before its -W timeout, having received nothing.
    let t0 = Instant::now();
    let (_status, lines) = first.finish();
    assert!(
        t0.elapsed() < Duration::from_secs(WAIT_SECS - 2),
        "taken-over client was not disconnected"
    );
    assert!(lines.is_empty(), "{lines:?}");
    publish(s.port, V5, &["-t", "tk", "-m", "to the new one", "-q", "1"]);
    assert_eq!(second.output(), strings(&["to the new one"]));
}

#[test]
fn mosquitto_persistent_session_receives_messages_queued_while_offline() {
    let s = Sluice::start();
    for v in [V311, V5] {
        let id = format!("persistent-{v}");
        // -E: exit once the subscription is acknowledged. -c keeps the
        // session (v5: -x gives it a session expiry interval).
        let mut setup = vec!["-c", "-i", &id, "-q", "2", "-t", "store/#", "-E"];
        let mut resume = vec!["-c", "-i", &id, "-q", "2", "-t", "store/#", "-v"];
        if v == V5 {
            setup.extend(["-x", "60"]);
            resume.extend(["-x", "60"]);
        }
        assert!(Sub::spawn(s.port, v, &setup, None).finish().0.success());
        // libmosquitto hands a QoS 2 message to the application only at
        // PUBREL, after any QoS 1 message sent behind it: QoS 2 goes last
        // so the printed order is the publish order.
        publish(s.port, v, &["-t", "store/1", "-m", "first", "-q", "1"]);
        publish(s.port, v, &["-t", "store/2", "-m", "second", "-q", "1"]);
        publish(s.port, v, &["-t", "store/3", "-m", "third", "-q", "2"]);
        let back = Sub::spawn(s.port, v, &resume, Some(3));
        assert_eq!(
            back.output(),
            strings(&["store/1 first", "store/2 second", "store/3 third"]),
            "-V {v}"
        );

        // A clean session (no -c) throws the stored session away: nothing
        // is queued for the id afterwards.
        assert!(
            Sub::spawn(s.port, v, &["-i", &id, "-t", "unrelated", "-E"], None)
                .finish()
                .0
                .success()
        );
        publish(s.port, v, &["-t", "store/4", "-m", "lost", "-q", "1"]);
        let mut again = vec!["-c", "-i", &id, "-q", "1", "-t", "other", "-v"];
        if v == V5 {
            again.extend(["-x", "60"]);
        }
        let mut all = conn_args(s.port, v);
        all.extend(again.iter().map(|s| s.to_string()));
        all.extend(strings(&["-W", "1"]));
        let mut p = Proc::spawn("mosquitto_sub", &all);
        p.wait(WAIT_SECS);
        let mut out = String::new();
        p.child
            .stdout
            .take()
            .unwrap()
            .read_to_string(&mut out)
            .unwrap();
        assert_eq!(out, "", "-V {v}: message queued for a discarded session");
    }
}

#[test]
fn mosquitto_message_larger_than_broker_maximum_is_refused() {
    let s = Sluice::start_with(&[("SLUICE__LIMITS__MAX_PACKET_SIZE", "1024")]);
    let big = "x".repeat(2000);
    for v in [V31, V311, V5] {
        let sub = Sub::ready(s.port, v, &["-t", "big/#", "-v", "-q", "1"], Some(1));
        let r = try_publish(s.port, v, &["-t", "big/payload", "-m", &big, "-q", "1"]);
        if v != V5 {
            // The broker closes the connection: mosquitto_pub never gets
            // its PUBACK ("The connection was lost").
            assert!(!r.status.success(), "-V {v}: {:?} {}", r.status, r.stderr);
        }
        // (-V 5: libmosquitto honours the Maximum Packet Size from CONNACK
        // and does not send it at all.)
        publish(s.port, v, &["-t", "big/small", "-m", "fits", "-q", "1"]);
        assert_eq!(sub.output(), strings(&["big/small fits"]), "-V {v}");
    }
}

#[test]
fn mosquitto_v5_broker_respects_client_maximum_packet_size() {
    let s = Sluice::start();
    let sub = Sub::ready(
        s.port,
        V5,
        &[
            "-t",
            "mps/#",
            "-v",
            "-q",
            "1",
            "-D",
            "connect",
            "maximum-packet-size",
            "200",
        ],
        Some(1),
    );
    let big = "y".repeat(500);
    publish(s.port, V5, &["-t", "mps/big", "-m", &big, "-q", "1"]);
    publish(s.port, V5, &["-t", "mps/small", "-m", "s", "-q", "1"]);
    assert_eq!(sub.output(), strings(&["mps/small s"]));
}

#[test]
fn mosquitto_unsubscribe_with_dash_u_stops_delivery() {
    let s = Sluice::start();
    let id = "unsub-client";
    assert!(Sub::spawn(
        s.port,
        V5,
        &["-c", "-x", "60", "-i", id, "-q", "1", "-t", "u/a", "-t", "u/b", "-E"],
        None
    )
    .finish()
    .0
    .success());
    // -U unsubscribes on connect; -E exits when that is acknowledged.
    assert!(Sub::spawn(
        s.port,
        V5,
        &["-c", "-x", "60", "-i", id, "-U", "u/a", "-t", "u/b", "-q", "1", "-E"],
        None
    )
    .finish()
    .0
    .success());
    publish(s.port, V5, &["-t", "u/a", "-m", "gone", "-q", "1"]);
    publish(s.port, V5, &["-t", "u/b", "-m", "still", "-q", "1"]);
    let back = Sub::spawn(
        s.port,
        V5,
        &["-c", "-x", "60", "-i", id, "-q", "1", "-t", "u/b", "-v"],
        Some(1),
    );
    assert_eq!(back.output(), strings(&["u/b still"]));
}
