//! The Kafka bridge to a cluster that wants TLS and SASL, as managed Kafka
//! does: tansu behind a TLS front (tansu 0.6.0 cannot serve TLS itself:
//! see `kafka_fronts`), the bridge trusting the test CA from
//! certs/generate.sh, and tansu with `--authentication` for SCRAM-SHA-256,
//! whose check the front makes (tansu 0.6.0 keeps no SCRAM credentials in
//! memory: see `kafka_scram`). A wrong CA and a wrong password show in the
//! bridge's status, and what was acknowledged meanwhile arrives once a
//! reload fixes the setting; and `check-config` refuses what start-up
//! refuses.
//!
//! SASL PLAIN cannot be tested against tansu 0.6.0 (its SASL library is
//! built without it); PLAIN, SCRAM-SHA-512 and OAUTHBEARER are checked
//! against the producer librdkafka creates
//! (`bridges/src/kafka/check_tests.rs`).

use std::net::TcpListener;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use sluice::codec::*;

use crate::bridges::check_config;
use crate::harness::*;
use crate::kafka_fronts::*;
use crate::kafka_peer::*;
use crate::kafka_scram::ScramUser;
use crate::transports::Certs;

/// The user the front lets in (with SCRAM-SHA-256).
const USER: &str = "bridge";
const PASSWORD: &str = "bridge-s3cret";

/// tansu reached with TLS through a front; with `--authentication`, the
/// front checks the SCRAM login and tansu's CLI goes through a relay that
/// logs it in.
struct SecureKafka {
    tansu: Tansu,
    front: TlsFront,
    authentication: bool,
    _admin: Option<AdminRelay>,
    certs: Certs,
}

impl SecureKafka {
    /// With `topic` created.
    fn start(topic: &str, authentication: bool) -> SecureKafka {
        let certs = Certs::generate();
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind the TLS front");
        let front_port = listener.local_addr().expect("front address").port();
        let mut tansu = Tansu::start_with(TansuSetup {
            authentication,
            advertised_port: Some(front_port),
        });
        let user = authentication.then(|| ScramUser {
            name: USER.to_owned(),
            password: PASSWORD.to_owned(),
        });
        let front = TlsFront::start(
            listener,
            tansu.port,
            (&certs.path("server-chain.pem"), &certs.path("server.key")),
            user,
        );
        let admin = authentication.then(|| AdminRelay::start(tansu.port));
        if let Some(admin) = &admin {
            tansu.set_cli_port(admin.port);
        }
        tansu.create_topic(topic);
        SecureKafka {
            tansu,
            front,
            authentication,
            _admin: admin,
            certs,
        }
    }

    fn bootstrap(&self) -> String {
        format!("127.0.0.1:{}", self.front.port)
    }

    /// A consumer over TLS, logged in when tansu wants it.
    fn reader(&self, topic: &str) -> TopicReader {
        let ca = self.certs.p("ca.pem");
        let mut options = vec![("ssl.ca.location", ca.as_str())];
        if self.authentication {
            options.extend([
                ("security.protocol", "sasl_ssl"),
                ("sasl.mechanism", "SCRAM-SHA-256"),
                ("sasl.username", USER),
                ("sasl.password", PASSWORD),
            ]);
        } else {
            options.push(("security.protocol", "ssl"));
        }
        TopicReader::with_options(&self.bootstrap(), topic, &options)
    }

    /// Reads `topic` over TLS until the readings 0..n arrived; fails if
    /// they do not all arrive.
    fn expect_delivered(&self, topic: &str, n: u64) {
        let mut reader = self.reader(topic);
        let got = reader
            .read_distinct(n as usize, Duration::from_secs(30))
            .to_vec();
        assert_eq!(
            seqs(&got),
            (0..n).collect::<Vec<u64>>(),
            "{}\n{}",
            reader.describe(),
            self.tansu.log()
        );
    }

    /// A broker with one bridge `secure` of `sensors/#` to `topic`, over
    /// TLS trusting `ca` (a file of certs/generate.sh); with `password_file`,
    /// logged in with SCRAM-SHA-256 as `bridge`.
    fn sluice_config(&self, topic: &str, ca: &str, password_file: Option<&Path>) -> String {
        let (protocol, sasl) = match password_file {
            Some(file) => (
                "sasl_ssl",
                format!(
                    "password_file = \"{}\"\n[bridges.sink.options]\n\"sasl.mechanism\" = \"SCRAM-SHA-256\"\n\"sasl.username\" = \"{USER}\"",
                    file.display()
                ),
            ),
            None => ("ssl", "[bridges.sink.options]".to_owned()),
        };
        format!(
            r#"
[[listeners]]
bind = "127.0.0.1:0"

[[bridges]]
name = "secure"
filters = ["sensors/#"]

[bridges.sink]
kind = "kafka"
bootstrap_servers = "{bootstrap}"
topic = "{topic}"
message_timeout_secs = 5
# tansu fences the idempotent producer after a timeout (see bridges_kafka).
acks = "1"
{sasl}
"security.protocol" = "{protocol}"
"ssl.ca.location" = "{ca}"
"linger.ms" = "5"
"#,
            bootstrap = self.bootstrap(),
            ca = self.certs.p(ca),
        )
    }
}

/// Publishes `seqs` at QoS 1 on `sensors/dev/t`, each PUBACKed.
fn publish_seqs(port: u16, seqs: std::ops::Range<u16>) {
    let (mut p, _) = Raw::connect(port, V5, "secure-dev", true);
    for seq in seqs {
        p.publish(publish(
            "sensors/dev/t",
            format!(r#"{{"seq":{seq}}}"#).as_bytes(),
            QoS::AtLeastOnce,
            seq + 1,
        ));
    }
}

/// The sequence numbers read back, without the resends' duplicates, sorted.
fn seqs(got: &[Received]) -> Vec<u64> {
    let mut seqs: Vec<u64> = distinct(got)
        .iter()
        .map(|m| m.json()["seq"].as_u64().unwrap_or(u64::MAX))
        .collect();
    seqs.sort_unstable();
    seqs
}

/// Polls `GET /api/v1/bridges/secure` until `done` holds; panics with the
/// last status after `within`.
fn wait_status(
    s: &Sluice,
    within: Duration,
    done: impl Fn(&serde_json::Value) -> bool,
) -> serde_json::Value {
    let deadline = Instant::now() + within;
    loop {
        let (code, body) = s.admin("GET", "/api/v1/bridges/secure", None, None);
        assert_eq!(code, 200, "{body}");
        let st: serde_json::Value = serde_json::from_str(&body).expect("status JSON");
        if done(&st) {
            return st;
        }
        assert!(Instant::now() < deadline, "status not reached: {st}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Waits until the bridge is failing for `reason` (in its `last_error`,
/// lowercase) having delivered nothing; the status.
fn wait_failing(s: &Sluice, reason: &str) -> serde_json::Value {
    let st = wait_status(s, Duration::from_secs(30), |st| {
        st["state"] == "failing"
            && st["last_error"]
                .as_str()
                .is_some_and(|e| e.to_lowercase().contains(reason))
    });
    assert_eq!(st["delivered"], 0, "{st}");
    st
}

#[test]
fn a_bridge_over_tls_delivers() {
    let kafka = SecureKafka::start("secure", false);
    let s = Sluice::start_config(&kafka.sluice_config("secure", "ca.pem", None));
    publish_seqs(s.port, 0..20);
    kafka.expect_delivered("secure", 20);
}

/// Starts a broker with the bridge configured by `wrong`, publishes ten
/// readings and waits until the bridge fails for `reason`, having
/// delivered none; then reloads with `right` and expects all ten: nothing
/// acknowledged meanwhile is lost.
fn reported_then_fixed_by_a_reload(kafka: &SecureKafka, wrong: &str, right: &str, reason: &str) {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("sluice.toml");
    std::fs::write(&config, wrong).unwrap();
    let s = Sluice::start_with_config(&config);
    publish_seqs(s.port, 0..10);
    let st = wait_failing(&s, reason);
    assert_eq!(st["buffered_records"], 10, "{st}");

    std::fs::write(&config, right).unwrap();
    let (code, text) = s.admin("POST", "/api/v1/reload", None, None);
    assert_eq!(code, 200, "{text}");
    assert!(text.contains("\"restarted\":[\"secure\"]"), "{text}");
    kafka.expect_delivered("secure", 10);
}

/// The cluster's certificate is not from the CA the bridge trusts.
#[test]
fn a_wrong_ca_is_reported_and_a_reload_delivers_what_waited() {
    let kafka = SecureKafka::start("secure", false);
    reported_then_fixed_by_a_reload(
        &kafka,
        &kafka.sluice_config("secure", "other-ca.pem", None),
        &kafka.sluice_config("secure", "ca.pem", None),
        "certificate verify failed",
    );
}

#[test]
fn a_bridge_over_tls_with_scram_delivers() {
    let kafka = SecureKafka::start("secure", true);
    let dir = tempfile::tempdir().unwrap();
    let password = dir.path().join("password");
    std::fs::write(&password, format!("{PASSWORD}\n")).unwrap();
    let s = Sluice::start_config(&kafka.sluice_config("secure", "ca.pem", Some(&password)));
    publish_seqs(s.port, 0..20);
    kafka.expect_delivered("secure", 20);
}

/// The SCRAM login is refused (a proof from the wrong password).
#[test]
fn a_wrong_password_is_reported_and_a_reload_delivers_what_waited() {
    let kafka = SecureKafka::start("secure", true);
    let dir = tempfile::tempdir().unwrap();
    let wrong = dir.path().join("wrong");
    std::fs::write(&wrong, "not-the-password").unwrap();
    let right = dir.path().join("right");
    std::fs::write(&right, PASSWORD).unwrap();
    reported_then_fixed_by_a_reload(
        &kafka,
        &kafka.sluice_config("secure", "ca.pem", Some(&wrong)),
        &kafka.sluice_config("secure", "ca.pem", Some(&right)),
        "authentication",
    );
}

/// `sasl_ssl` passed `check-config` and then stopped start-up ("OpenSSL not
/// available at build time"); now it starts, and what librdkafka refuses
/// only when the producer is created (a CA file it cannot load, a SASL
/// mechanism without credentials) is refused by `check-config` too, naming
/// the bridge's key. No Kafka is contacted.
#[test]
fn check_config_refuses_what_the_kafka_producer_refuses() {
    let dir = tempfile::tempdir().unwrap();
    let config = |options: &str| {
        format!(
            "[[listeners]]\nbind = \"127.0.0.1:0\"\n[[bridges]]\nname = \"managed\"\nfilters = [\"a/#\"]\n[bridges.sink]\nkind = \"kafka\"\nbootstrap_servers = \"127.0.0.1:1\"\ntopic = \"t\"\n[bridges.sink.options]\n\"security.protocol\" = \"sasl_ssl\"\n\"sasl.mechanism\" = \"PLAIN\"\n{options}"
        )
    };
    let (code, err) = check_config(
        dir.path(),
        &config("\"sasl.username\" = \"key\"\n\"sasl.password\" = \"secret\"\n"),
    );
    assert_eq!(code, Some(0), "{err}");
    let cases = [
        (
            "\"sasl.username\" = \"key\"\n\"sasl.password\" = \"secret\"\n\"ssl.ca.location\" = \"/nonexistent/ca.pem\"\n",
            "bridges[0].sink.options.ssl.ca.location",
        ),
        ("\"sasl.username\" = \"key\"\n", "bridges[0].sink.options"),
    ];
    for (options, key) in cases {
        let (code, err) = check_config(dir.path(), &config(options));
        assert_eq!(code, Some(2), "{key}: {err}");
        assert!(err.contains(key), "{key}: {err}");
        assert!(err.contains("managed"), "names the bridge: {err}");
    }

    // The example's secret comes from the environment: without it, no go.
    let example = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/bridges/kafka-managed.toml");
    let out = Command::new(SLUICE)
        .arg("check-config")
        .arg(&example)
        .env_remove("KAFKA_API_SECRET")
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(
        err.contains("bridges[0].sink.password_env") && err.contains("KAFKA_API_SECRET"),
        "{err}"
    );
}
