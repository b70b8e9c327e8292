//! Password files written by the real `mosquitto_passwd` (Debian's
//! `mosquitto` package, installed by `tests/install-deps.sh`) are read by
//! `sluice::auth::PasswordFile`, and files we write stay editable by it.
//!
//! Skipped, with a message, when `mosquitto_passwd` is not installed.

use std::path::Path;
use std::process::{Command, Stdio};

use sluice::auth::{upsert_password_file, PasswordFile};

/// Runs `mosquitto_passwd ARGS`; `None` if the tool is not installed.
fn mosquitto_passwd(args: &[&str]) -> Option<()> {
    let out = match Command::new("mosquitto_passwd")
        .args(args)
        .stdin(Stdio::null())
        .output()
    {
        Ok(out) => out,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return None,
        Err(e) => panic!("running mosquitto_passwd {args:?}: {e}"),
    };
    assert!(
        out.status.success(),
        "mosquitto_passwd {args:?} failed ({}): {}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    Some(())
}

/// Whether the tool exists; prints why the test is skipped if not.
fn have_mosquitto_passwd(test: &str) -> bool {
    let found = Command::new("mosquitto_passwd")
        .arg("-h")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok();
    if !found {
        eprintln!(
            "SKIPPED {test}: mosquitto_passwd is not installed \
             (apt-get install mosquitto, or run tests/install-deps.sh)"
        );
    }
    found
}

fn load(path: &Path) -> PasswordFile {
    PasswordFile::load(path).unwrap_or_else(|e| panic!("{e}"))
}

fn arg(path: &Path) -> &str {
    path.to_str().expect("temporary path is UTF-8")
}

#[test]
fn single_user_pbkdf2() {
    if !have_mosquitto_passwd("single_user_pbkdf2") {
        return;
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("passwd");
    mosquitto_passwd(&["-c", "-b", arg(&path), "sensor-1", "s3cret"]).expect("installed");

    let text = std::fs::read_to_string(&path).expect("read");
    assert!(text.starts_with("sensor-1:$7$"), "{text}");

    let users = load(&path);
    assert_eq!(users.len(), 1);
    assert!(users.contains("sensor-1"));
    assert!(users.verify("sensor-1", b"s3cret"));
    assert!(!users.verify("sensor-1", b"s3cret2"));
    assert!(!users.verify("sensor-1", b"S3CRET"));
    assert!(!users.verify("sensor-1", b""));
    assert!(!users.verify("sensor-2", b"s3cret"));
}

#[test]
fn several_users_added_and_updated() {
    if !have_mosquitto_passwd("several_users_added_and_updated") {
        return;
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("passwd");
    let p = arg(&path);
    mosquitto_passwd(&["-c", "-b", p, "alice", "alice-pw"]).expect("installed");
    mosquitto_passwd(&["-b", p, "bob", "pass with spaces"]).expect("installed");
    mosquitto_passwd(&["-b", p, "carol", "c:o:l:o:n:s"]).expect("installed");
    // The 1.x format, still written on request.
    mosquitto_passwd(&["-H", "sha512", "-b", p, "dave", "legacy"]).expect("installed");
    mosquitto_passwd(&["-b", p, "eve", "\u{e9}t\u{e9} \u{2603}"]).expect("installed");
    // Changing a password rewrites the user's line.
    mosquitto_passwd(&["-b", p, "bob", "rotated"]).expect("installed");

    let text = std::fs::read_to_string(&path).expect("read");
    assert!(text.lines().any(|l| l.starts_with("dave:$6$")), "{text}");

    let users = load(&path);
    assert_eq!(users.len(), 5);
    for (user, good) in [
        ("alice", "alice-pw"),
        ("bob", "rotated"),
        ("carol", "c:o:l:o:n:s"),
        ("dave", "legacy"),
        ("eve", "\u{e9}t\u{e9} \u{2603}"),
    ] {
        assert!(
            users.verify(user, good.as_bytes()),
            "{user} with the right password"
        );
        assert!(
            !users.verify(user, b"wrong"),
            "{user} with a wrong password"
        );
    }
    assert!(
        !users.verify("bob", b"pass with spaces"),
        "old password still valid"
    );
    assert!(
        !users.verify("alice", b"rotated"),
        "another user's password accepted"
    );
    assert!(!users.verify("mallory", b"alice-pw"));

    // Deleting a user with -D: gone for us too.
    mosquitto_passwd(&["-D", p, "carol"]).expect("installed");
    let users = load(&path);
    assert_eq!(users.len(), 4);
    assert!(!users.contains("carol"));
    assert!(!users.verify("carol", b"c:o:l:o:n:s"));
    assert!(users.verify("alice", b"alice-pw"));
}

#[test]
fn plain_text_file_hashed_with_dash_u() {
    if !have_mosquitto_passwd("plain_text_file_hashed_with_dash_u") {
        return;
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("passwd");
    std::fs::write(&path, "gw-1:first\ngw-2:second one\n").expect("write");

    // A plain-text file is refused rather than compared as text.
    let err = PasswordFile::load(&path).expect_err("plain text accepted");
    assert!(err.to_string().contains("line 1"), "{err}");

    mosquitto_passwd(&["-U", arg(&path)]).expect("installed");
    let users = load(&path);
    assert!(users.verify("gw-1", b"first"));
    assert!(users.verify("gw-2", b"second one"));
    assert!(!users.verify("gw-2", b"second"));
}

#[test]
fn our_file_stays_editable_by_mosquitto_passwd() {
    if !have_mosquitto_passwd("our_file_stays_editable_by_mosquitto_passwd") {
        return;
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("passwd");
    upsert_password_file(&path, "ours", b"from sluice").unwrap_or_else(|e| panic!("{e}"));
    mosquitto_passwd(&["-b", arg(&path), "theirs", "from mosquitto"]).expect("installed");
    upsert_password_file(&path, "ours", b"rotated by sluice").unwrap_or_else(|e| panic!("{e}"));

    let text = std::fs::read_to_string(&path).expect("read");
    let names: Vec<&str> = text
        .lines()
        .filter_map(|l| l.split_once(':').map(|(u, _)| u))
        .collect();
    assert_eq!(names, ["ours", "theirs"]);

    let users = load(&path);
    assert!(users.verify("ours", b"rotated by sluice"));
    assert!(!users.verify("ours", b"from sluice"));
    assert!(users.verify("theirs", b"from mosquitto"));
}
