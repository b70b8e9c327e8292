//! Who published a bridged message, and as whom a bridge reads: the
//! publisher's client id, user name and acceptance time reach the
//! transform and the templates; a bridge receives what its filters name
//! even when an ACL gives anonymous clients nothing.

use std::process::Command;
use std::time::Duration;

use bytes::Bytes;
use sluice::codec::*;

use crate::bridges::Endpoint;
use crate::harness::*;

/// A password file with `meter-7` / `kWh!`.
fn password_file(dir: &std::path::Path) -> std::path::PathBuf {
    let pw = dir.join("passwd");
    let out = Command::new(SLUICE)
        .arg("passwd")
        .arg(&pw)
        .args(["meter-7", "--password", "kWh!"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    pw
}

fn login(client_id: &str) -> Connect {
    let mut c = connect_packet(V5, client_id, true);
    c.username = Some("meter-7".into());
    c.password = Some(Bytes::from_static(b"kWh!"));
    c
}

fn bridge(port: u16, extra: &str) -> String {
    format!(
        r#"
[[listeners]]
bind = "127.0.0.1:0"
[[bridges]]
name = "who"
filters = ["meters/#"]
transform = '{{by: .client_id, user: .username, at: .timestamp, v: .payload.v}}'
{extra}
[bridges.sink]
kind = "http"
url = "http://127.0.0.1:{port}/in/{{client_id}}/{{username}}"
"#
    )
}

#[test]
fn the_publishers_identity_and_acceptance_time_reach_templates_and_the_rule() {
    let ep = Endpoint::start("[]");
    let dir = tempfile::tempdir().unwrap();
    let pw = password_file(dir.path());
    let s = Sluice::start_config(&format!(
        "password_file = \"{}\"\n{}",
        pw.display(),
        bridge(ep.port, "")
    ));
    let (mut p, _) = Raw::connect_with(s.port, login("meter-7-dev"));
    let before = sluice::store::now_ms();
    p.publish(publish("meters/7", br#"{"v":42}"#, QoS::AtLeastOnce, 1));
    let after = sluice::store::now_ms();
    let got = ep.wait_for(1, Duration::from_secs(10));
    assert_eq!(got.len(), 1, "{got:?}");
    assert_eq!(got[0]["path"], "/in/meter-7-dev/meter-7", "{got:?}");
    let body: serde_json::Value = serde_json::from_str(got[0]["body"].as_str().unwrap()).unwrap();
    assert_eq!(body["by"], "meter-7-dev", "{body}");
    assert_eq!(body["user"], "meter-7", "{body}");
    assert_eq!(body["v"], 42, "{body}");
    let at = body["at"].as_u64().unwrap();
    assert!(before <= at && at <= after, "{before} <= {at} <= {after}");
}

/// The ACL gives anonymous clients nothing and `meter-7` its own tree. A
/// bridge without a user name is trusted (it gets what its filters name);
/// one with `username` is held to that user's rules.
#[test]
fn bridges_read_under_an_acl_as_trusted_or_as_their_configured_user() {
    let ep = Endpoint::start("[]");
    let dir = tempfile::tempdir().unwrap();
    let pw = password_file(dir.path());
    let acl = dir.path().join("acl");
    std::fs::write(&acl, "user meter-7\ntopic readwrite meters/#\n").unwrap();
    let bridge = |name: &str, user: &str| {
        format!(
            "[[bridges]]\nname = \"{name}\"\nfilters = [\"meters/#\"]\n{user}\n\
             [bridges.sink]\nkind = \"http\"\nurl = \"http://127.0.0.1:{}/{name}\"\n",
            ep.port
        )
    };
    let s = Sluice::start_config(&format!(
        "password_file = \"{}\"\nacl_file = \"{}\"\n[[listeners]]\nbind = \"127.0.0.1:0\"\n{}{}{}",
        pw.display(),
        acl.display(),
        bridge("trusted", ""),
        bridge("as-meter", "username = \"meter-7\""),
        bridge("as-nobody", "username = \"nobody\""),
    ));
    let (mut p, _) = Raw::connect_with(s.port, login("meter-7-dev"));
    p.publish(publish("meters/7", br#"{"v":1}"#, QoS::AtLeastOnce, 1));
    // Both bodies are the same: wait for two requests, not two bodies.
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while ep.delivered().len() < 2 && std::time::Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
    }
    let got = ep.delivered();
    let mut paths: Vec<&str> = got.iter().filter_map(|r| r["path"].as_str()).collect();
    paths.sort_unstable();
    assert_eq!(paths, ["/as-meter", "/trusted"], "{got:?}");
    let (_, body) = s.admin("GET", "/api/v1/bridges/as-nobody", None, None);
    let st: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(st["received"], 0, "{st}");
}
