//! Loading and checking the configuration: defaults, files, keys named
//! in errors.

use std::io::Write;

use super::*;

fn load_str(toml: &str) -> Result<Config, ConfigError> {
    let mut f = tempfile::Builder::new().suffix(".toml").tempfile().unwrap();
    f.write_all(toml.as_bytes()).unwrap();
    Config::load(Some(f.path()))
}

#[test]
fn defaults_need_no_file() {
    let c = Config::load(None).unwrap();
    assert_eq!(c.listeners[0].bind.to_string(), "127.0.0.1:1883");
    assert!(c.allow_anonymous);
}

#[test]
fn file_values_override_defaults() {
    let c = load_str("[limits]\nmax_packet_size = 2048\n[[listeners]]\nbind = \"127.0.0.1:0\"\n")
        .unwrap();
    assert_eq!(c.limits.max_packet_size, 2048);
    assert_eq!(c.listeners[0].bind.port(), 0);
}

#[test]
fn unknown_key_is_an_error_naming_key_and_file() {
    let err = load_str("[limits]\nmax_pakcet_size = 5\n")
        .unwrap_err()
        .to_string();
    assert!(err.contains("max_pakcet_size"), "{err}");
    assert!(err.contains(".toml"), "{err}");
}

/// The pre-authentication CONNECT limit is the smaller of the two, and
/// the opening budget must hold at least one such CONNECT.
#[test]
fn connect_and_budget_limits_are_checked() {
    let c = load_str("[limits]\nmax_packet_size = 2048\n").expect("valid");
    assert_eq!(c.limits.connect_packet_limit(), 2048);
    for (toml, key) in [
        (
            "max_connect_packet_size = 10",
            "limits.max_connect_packet_size",
        ),
        ("max_opening_bytes = 1000", "limits.max_opening_bytes"),
        ("max_sessions = 0", "limits.max_sessions"),
    ] {
        let err = load_str(&format!("[limits]\n{toml}\n"))
            .unwrap_err()
            .to_string();
        assert!(err.contains(key), "{toml}: {err}");
    }
}

#[test]
fn bad_value_is_an_error_naming_key() {
    let err = load_str("[limits]\nmax_inflight_messages = 0\n")
        .unwrap_err()
        .to_string();
    assert!(err.contains("limits.max_inflight_messages"), "{err}");
    let err = load_str("[limits]\nmax_packet_size = \"big\"\n")
        .unwrap_err()
        .to_string();
    assert!(err.contains("max_packet_size"), "{err}");
}

#[test]
fn worker_threads_default_to_one_per_core_and_are_bounded() {
    assert_eq!(Config::load(None).unwrap().worker_threads, 0);
    assert_eq!(load_str("worker_threads = 1\n").unwrap().worker_threads, 1);
    let err = load_str("worker_threads = 100000\n")
        .unwrap_err()
        .to_string();
    assert!(err.contains("worker_threads"), "{err}");
    assert!(err.contains(".toml"), "{err}");
}

#[test]
fn bridges_dir_adds_one_bridge_per_file_and_names_a_bad_file() {
    let dir = tempfile::tempdir().unwrap();
    let bridge = |name: &str| {
        format!("name = \"{name}\"\nfilters = [\"a/#\"]\n[sink]\nkind = \"http\"\nurl = \"http://127.0.0.1:1/x\"\n")
    };
    std::fs::write(dir.path().join("a.toml"), bridge("one")).unwrap();
    std::fs::write(dir.path().join("b.toml"), bridge("two")).unwrap();
    std::fs::write(dir.path().join("notes.txt"), "ignored").unwrap();
    let c = load_str(&format!("bridges_dir = \"{}\"\n", dir.path().display())).unwrap();
    let names: Vec<&str> = c.bridges.iter().map(|b| b.name.as_str()).collect();
    assert_eq!(names, ["one", "two"]);
    std::fs::write(
        dir.path().join("c.toml"),
        "name = \"three\"\nfilterz = []\n",
    )
    .unwrap();
    let err = load_str(&format!("bridges_dir = \"{}\"\n", dir.path().display()))
        .unwrap_err()
        .to_string();
    assert!(err.contains("c.toml") && err.contains("filterz"), "{err}");
}

#[test]
fn admin_hosts_and_origins_are_checked() {
    let c = load_str("[admin]\nallowed_hosts = [\"broker.lan\", \"ops:9000\"]\nallowed_origins = [\"https://ops.example\", \"*\"]\n").unwrap();
    assert_eq!(c.admin.request_timeout_secs, 10);
    // A generated token's file may not exist before the first start.
    let c =
        load_str("[admin]\ntoken_file = \"/nonexistent/token\"\ngenerate_token = true\n").unwrap();
    assert!(c.admin.generate_token);
    for (toml, key) in [
        (
            "allowed_hosts = [\"http://broker.lan\"]",
            "admin.allowed_hosts",
        ),
        (
            "allowed_origins = [\"ops.example\"]",
            "admin.allowed_origins",
        ),
        (
            "allowed_origins = [\"https://ops.example/path\"]",
            "admin.allowed_origins",
        ),
        ("request_timeout_secs = 0", "admin.request_timeout_secs"),
        ("generate_token = true", "admin.generate_token"),
        ("token_file = \"/nonexistent/token\"", "admin.token_file"),
    ] {
        let err = load_str(&format!("[admin]\n{toml}\n"))
            .unwrap_err()
            .to_string();
        assert!(err.contains(key), "{toml}: {err}");
    }
}

#[test]
fn missing_file_is_an_error() {
    let err = Config::load(Some(Path::new("/nonexistent/sluice.toml")))
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("/nonexistent/sluice.toml") && err.contains("not found"),
        "{err}"
    );
}

#[test]
fn cluster_is_off_by_default_and_checked_when_present() {
    assert_eq!(Config::load(None).unwrap().cluster, None);
    let c = load_str("[cluster]\nservers = [\"nats://10.0.0.1:4222\", \"tls://nats.lan:4443\"]\nnode_name = \"node-1\"\n").unwrap();
    let cluster = c.cluster.unwrap();
    assert_eq!((cluster.replicas, cluster.prefix.as_str()), (3, "sluice"));
    let mut password = tempfile::NamedTempFile::new().unwrap();
    password.write_all(b"secret\n").unwrap();
    let password = password.path().display().to_string();
    let with_user = format!("user = \"sluice\"\npassword_file = \"{password}\"");
    let c = load_str(&format!(
        "[cluster]\nservers = [\"nats://h:4222\"]\nnode_name = \"a\"\n{with_user}\n"
    ))
    .unwrap();
    assert_eq!(c.cluster.unwrap().user.as_deref(), Some("sluice"));
    for (toml, key) in [
        ("node_name = \"a\"", "cluster.servers"),
        ("servers = [\"h:4222\"]\nnode_name = \"a\"", "cluster.servers"),
        ("servers = [\"nats://h\"]\nnode_name = \"a\"", "cluster.servers"),
        ("servers = [\"nats://u:p@h:4222\"]\nnode_name = \"a\"", "cluster.servers"),
        ("servers = [\"nats://h:4222\"]", "cluster.node_name"),
        ("servers = [\"nats://h:4222\"]\nnode_name = \"a.b\"", "cluster.node_name"),
        ("servers = [\"nats://h:4222\"]\nnode_name = \"a\"\nreplicas = 0", "cluster.replicas"),
        ("servers = [\"nats://h:4222\"]\nnode_name = \"a\"\nreplicas = 6", "cluster.replicas"),
        ("servers = [\"nats://h:4222\"]\nnode_name = \"a\"\nprefix = \"a.>\"", "cluster.prefix"),
        ("servers = [\"nats://h:4222\"]\nnode_name = \"a\"\nuser = \"u\"", "cluster.user"),
        (&format!("servers = [\"nats://h:4222\"]\nnode_name = \"a\"\npassword_file = \"{password}\""), "cluster.password_file"),
        (&format!("servers = [\"nats://h:4222\"]\nnode_name = \"a\"\n{with_user}\ntoken_env = \"HOME\""), "cluster.token_file"),
        ("servers = [\"nats://h:4222\"]\nnode_name = \"a\"\ntoken_file = \"/nonexistent/t\"", "cluster.token_file"),
        ("servers = [\"nats://h:4222\"]\nnode_name = \"a\"\ntoken_env = \"SLUICE_TEST_UNSET_TOKEN\"", "cluster.token_env"),
        ("servers = [\"nats://h:4222\"]\nnode_name = \"a\"\ntls_ca = \"/nonexistent/ca.pem\"", "cluster.tls_ca"),
    ] {
        let err = load_str(&format!("[cluster]\n{toml}\n")).unwrap_err().to_string();
        assert!(err.contains(key) && err.contains(".toml"), "{toml}: {err}");
    }
}
