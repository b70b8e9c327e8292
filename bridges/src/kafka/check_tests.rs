//! `check-config` against start-up: [`KafkaSinkConfig::check`] must refuse
//! exactly the settings [`KafkaSink::new`] refuses, with the same words,
//! TLS and SASL included (this build has OpenSSL; see bridges/Cargo.toml).

use std::collections::BTreeMap;

use super::*;

fn with_options(options: &[(&str, &str)]) -> KafkaSinkConfig {
    KafkaSinkConfig {
        // Nothing listens there: the sinks made here never deliver.
        bootstrap_servers: "127.0.0.1:1".to_owned(),
        options: options
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect::<BTreeMap<_, _>>(),
        ..KafkaSinkConfig::default()
    }
}

const SASL_SSL: (&str, &str) = ("security.protocol", "sasl_ssl");

fn credentials() -> [(&'static str, &'static str); 2] {
    [("sasl.username", "key"), ("sasl.password", "secret")]
}

#[test]
fn kafka_check_refuses_exactly_what_start_up_refuses() {
    let [user, pass] = credentials();
    let cases: Vec<(&str, KafkaSinkConfig, bool)> = vec![
        // The case: refused by a build without OpenSSL.
        (
            "sasl_ssl PLAIN",
            with_options(&[SASL_SSL, ("sasl.mechanism", "PLAIN"), user, pass]),
            true,
        ),
        (
            "SCRAM-SHA-256",
            with_options(&[SASL_SSL, ("sasl.mechanism", "SCRAM-SHA-256"), user, pass]),
            true,
        ),
        (
            "SCRAM-SHA-512",
            with_options(&[SASL_SSL, ("sasl.mechanism", "SCRAM-SHA-512"), user, pass]),
            true,
        ),
        (
            "OAUTHBEARER, unsecured JWT",
            with_options(&[
                SASL_SSL,
                ("sasl.mechanism", "OAUTHBEARER"),
                ("enable.sasl.oauthbearer.unsecure.jwt", "true"),
                ("sasl.oauthbearer.config", "principal=bridge"),
            ]),
            true,
        ),
        ("ssl", with_options(&[("security.protocol", "ssl")]), true),
        (
            "PLAIN without credentials",
            with_options(&[SASL_SSL, ("sasl.mechanism", "PLAIN")]),
            false,
        ),
        (
            "SCRAM without a password",
            with_options(&[SASL_SSL, ("sasl.mechanism", "SCRAM-SHA-512"), user]),
            false,
        ),
        // OAUTHBEARER's OIDC method needs libcurl, which this build leaves
        // out (a token from the unsecured JWT above works).
        (
            "OAUTHBEARER, OIDC",
            with_options(&[
                SASL_SSL,
                ("sasl.mechanism", "OAUTHBEARER"),
                ("sasl.oauthbearer.method", "oidc"),
            ]),
            false,
        ),
        // Kerberos needs cyrus-sasl, which this build leaves out.
        (
            "GSSAPI",
            with_options(&[
                ("security.protocol", "sasl_plaintext"),
                ("sasl.mechanism", "GSSAPI"),
            ]),
            false,
        ),
        (
            "a CA file that is not there",
            with_options(&[
                SASL_SSL,
                ("sasl.mechanism", "PLAIN"),
                user,
                pass,
                ("ssl.ca.location", "/nonexistent/ca.pem"),
            ]),
            false,
        ),
        (
            "conflicting acks",
            with_options(&[("request.required.acks", "1")]),
            false,
        ),
        (
            "an unset password variable",
            KafkaSinkConfig {
                password_env: Some("SLUICE_TEST_SURELY_UNSET_KAFKA_SECRET".to_owned()),
                ..with_options(&[SASL_SSL, ("sasl.mechanism", "PLAIN"), user])
            },
            false,
        ),
    ];
    for (what, config, accepted) in cases {
        let checked = config.check();
        let started = KafkaSink::new(config).map(drop);
        assert_eq!(checked, started, "{what}: check and start-up disagree");
        assert_eq!(checked.is_ok(), accepted, "{what}: {checked:?}");
    }
}

#[test]
fn kafka_check_names_the_option_at_fault() {
    let [user, pass] = credentials();
    let config = with_options(&[
        SASL_SSL,
        ("sasl.mechanism", "PLAIN"),
        user,
        pass,
        ("ssl.ca.location", "/nonexistent/ca.pem"),
    ]);
    let error = config.check().unwrap_err();
    let (key, message) = config.describe(&error);
    assert_eq!(key, "options.ssl.ca.location", "{message}");
    assert!(message.contains("ssl.ca.location failed"), "{message}");

    let config = with_options(&[SASL_SSL, ("sasl.mechanism", "SCRAM-SHA-256")]);
    let error = config.check().unwrap_err();
    let (key, message) = config.describe(&error);
    assert_eq!(key, "options", "{message}");
    assert!(message.contains("sasl.password"), "{message}");
}

#[test]
fn kafka_the_password_comes_from_a_file_or_the_environment() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("api-secret");
    std::fs::write(&file, "s3cret\n").unwrap();
    let [user, _] = credentials();
    let from_file = KafkaSinkConfig {
        password_file: Some(file.clone()),
        ..with_options(&[SASL_SSL, ("sasl.mechanism", "PLAIN"), user])
    };
    let client = config::settings(&from_file).unwrap();
    assert_eq!(client.get("sasl.password"), Some("s3cret"));
    assert_eq!(from_file.check(), Ok(()));

    let path = std::env::var("PATH").unwrap();
    let from_env = KafkaSinkConfig {
        password_env: Some("PATH".to_owned()),
        ..from_file.clone()
    };
    let refused = from_env.check().unwrap_err();
    assert_eq!(
        from_env.describe(&refused).0,
        "password_env",
        "not both: {refused}"
    );
    let from_env = KafkaSinkConfig {
        password_file: None,
        ..from_env
    };
    let client = config::settings(&from_env).unwrap();
    assert_eq!(client.get("sasl.password"), Some(path.as_str()));

    let twice = KafkaSinkConfig {
        options: [("sasl.password".to_owned(), "other".to_owned())].into(),
        ..from_file.clone()
    };
    let refused = twice.check().unwrap_err();
    assert_eq!(twice.describe(&refused).0, "password_file", "{refused}");

    let missing = KafkaSinkConfig {
        password_file: Some(dir.path().join("missing")),
        ..from_file
    };
    let refused = missing.check().unwrap_err();
    let (key, message) = missing.describe(&refused);
    assert_eq!(key, "password_file");
    assert!(message.contains("missing"), "{message}");
}
