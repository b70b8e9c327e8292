//! `docker/` checked against the repository (issues 10 and 24). CI neither
//! pulls nor builds images, so these tests read the Dockerfile, compose.yaml
//! and the configurations they mount, and catch what would break
//! `docker compose up` or make the image unsafe: a file or port that does
//! not exist, a container that others talk to by its service name but that
//! listens on its own loopback (where nothing else can reach it), and an
//! admin API without a token on a reachable address.

mod compose_yaml;

use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::io::{BufRead, BufReader};
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use compose_yaml::{parse_yaml, Yaml};

use crate::harness::*;
use crate::showcase::{generate_certs, repo};

/// docker/, where compose.yaml's relative paths start.
fn docker() -> PathBuf {
    repo().join("docker")
}

/// compose.yaml, read, and the configuration the image runs by default.
struct Compose {
    doc: Yaml,
    image_config: String,
}

impl Compose {
    fn load() -> Compose {
        let read = |f: &str| std::fs::read_to_string(docker().join(f)).unwrap();
        Compose {
            doc: parse_yaml(&read("compose.yaml")),
            image_config: read("sluice.toml"),
        }
    }

    fn services(&self) -> &[(String, Yaml)] {
        self.doc.get("services").expect("services").entries()
    }

    fn service(&self, name: &str) -> Option<&Yaml> {
        self.services()
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, s)| s)
    }

    /// The configuration a service runs the broker with: the file its
    /// `--config` names (a bind mount) or the image's default. None for a
    /// service that does not run the broker (another image, or the Sluice
    /// image with another entrypoint: the simulator, generate-certs).
    fn broker_config(&self, name: &str, svc: &Yaml) -> Option<String> {
        let image = svc.get("image").and_then(Yaml::scalar).unwrap_or("");
        if !image.starts_with("sluice") || svc.get("entrypoint").is_some() {
            return None;
        }
        let command = svc.get("command").map(Yaml::items).unwrap_or_default();
        Some(match command.iter().position(|a| a == "--config") {
            Some(i) => {
                let path = &command[i + 1];
                let host = mounts(svc)
                    .remove(path)
                    .unwrap_or_else(|| panic!("{name}: {path} is not mounted"));
                std::fs::read_to_string(host).unwrap()
            }
            None => self.image_config.clone(),
        })
    }
}

/// A service's bind mounts: path in the container → file or directory
/// under docker/.
fn mounts(svc: &Yaml) -> BTreeMap<String, PathBuf> {
    svc.get("volumes")
        .map(Yaml::items)
        .unwrap_or_default()
        .iter()
        .filter(|v| v.starts_with('.') || v.starts_with('/'))
        .map(|v| {
            let parts: Vec<&str> = v.split(':').collect();
            (parts[1].to_owned(), docker().join(parts[0]))
        })
        .collect()
}

/// What a service runs: its entrypoint, then its command.
fn argv(svc: &Yaml) -> Vec<String> {
    ["entrypoint", "command"]
        .iter()
        .flat_map(|k| svc.get(k).map(Yaml::items).unwrap_or_default())
        .collect()
}

/// A service's environment, from either of compose's two forms.
fn environment(svc: &Yaml) -> BTreeMap<String, String> {
    match svc.get("environment") {
        Some(Yaml::Map(m)) => m
            .iter()
            .filter_map(|(k, v)| Some((k.clone(), v.scalar()?.to_owned())))
            .collect(),
        Some(list) => list
            .items()
            .iter()
            .filter_map(|kv| kv.split_once('='))
            .map(|(k, v)| (k.to_owned(), v.to_owned()))
            .collect(),
        None => BTreeMap::new(),
    }
}

/// A Sluice configuration as plain data, read by the same TOML reader
/// Sluice uses (the `config` crate), so a check sees the keys whether or
/// not this build's parser accepts them all.
fn toml_value(text: &str) -> serde_json::Value {
    config::Config::builder()
        .add_source(config::File::from_str(text, config::FileFormat::Toml))
        .build()
        .and_then(|c| c.try_deserialize())
        .unwrap_or_else(|e| panic!("not a configuration: {e}\n{text}"))
}

fn parse_bind(b: &serde_json::Value) -> SocketAddr {
    let b = b.as_str().unwrap_or_else(|| panic!("bind {b}"));
    b.parse().unwrap_or_else(|e| panic!("bind {b}: {e}"))
}

/// Where a configuration's admin listener listens (127.0.0.1:8080 unless
/// it says otherwise); None when it is disabled.
fn admin_bind(config: &serde_json::Value) -> Option<SocketAddr> {
    let admin = &config["admin"];
    if admin["enabled"].as_bool() == Some(false) {
        return None;
    }
    Some(match &admin["bind"] {
        serde_json::Value::Null => SocketAddr::from(([127, 0, 0, 1], 8080)),
        b => parse_bind(b),
    })
}

/// Where a configuration listens: every listener and the admin listener.
fn binds(config: &serde_json::Value) -> Vec<SocketAddr> {
    let listeners = config["listeners"].as_array().into_iter().flatten();
    listeners
        .map(|l| parse_bind(&l["bind"]))
        .chain(admin_bind(config))
        .collect()
}

fn bound_ports(config: &str) -> BTreeSet<u16> {
    binds(&toml_value(config))
        .iter()
        .map(SocketAddr::port)
        .collect()
}

fn is_loopback(host: &str) -> bool {
    host == "localhost"
        || host
            .trim_matches(|c| c == '[' || c == ']')
            .parse::<IpAddr>()
            .is_ok_and(|ip| ip.to_canonical().is_loopback())
}

/// `host:port` out of `scheme://host:port/path`, `host:port` or, with a
/// default port, `scheme://host/path`.
fn host_port(s: &str, default_port: Option<u16>) -> Option<(String, u16)> {
    let rest = s.split_once("://").map_or(s, |(_, r)| r);
    let authority = rest.split('/').next()?;
    match authority.rsplit_once(':') {
        Some((host, port)) => Some((host.to_owned(), port.parse().ok()?)),
        None => Some((authority.to_owned(), default_port?)),
    }
}

/// A connection one container opens to another by its service name.
#[derive(Debug)]
struct Link {
    from: String,
    to: String,
    port: u16,
    /// Where it is written, for the message.
    why: String,
}

/// The `host:port`s a bridge's sink connects to; None for a kind this
/// test does not know (it must learn it rather than skip it).
fn bridge_targets(sink: &serde_json::Value) -> Option<Vec<(String, u16)>> {
    let text = |key: &str| sink[key].as_str().unwrap_or("").to_owned();
    Some(match sink["kind"].as_str()? {
        "http" => {
            let url = text("url");
            let default = if url.starts_with("https") { 443 } else { 80 };
            host_port(&url, Some(default)).into_iter().collect()
        }
        "kafka" => text("bootstrap_servers")
            .split(',')
            .filter_map(|s| host_port(s.trim(), None))
            .collect(),
        "mqtt" => host_port(&text("address"), None).into_iter().collect(),
        _ => return None,
    })
}

/// Every link compose.yaml sets up: what the bridges of each broker's
/// configuration send to, and the `service:port` and `--host`/`--port`
/// pairs in each service's command. A bridge aimed at loopback is refused
/// outright: inside a container that is the container itself.
fn links(compose: &Compose) -> Vec<Link> {
    let names: HashSet<&str> = compose.services().iter().map(|(n, _)| n.as_str()).collect();
    let mut out = Vec::new();
    for (name, svc) in compose.services() {
        let mut add = |host: &str, port: u16, why: String| {
            assert!(
                !is_loopback(host),
                "{name}: {why} names loopback, which in its container is the container itself"
            );
            if names.contains(host) {
                out.push(Link {
                    from: name.clone(),
                    to: host.to_owned(),
                    port,
                    why,
                });
            }
        };
        if let Some(config) = compose.broker_config(name, svc) {
            for bridge in toml_value(&config)["bridges"]
                .as_array()
                .into_iter()
                .flatten()
            {
                let sink = &bridge["sink"];
                let targets = bridge_targets(sink).unwrap_or_else(|| {
                    panic!("{name}: sink kind {} is not checked here", sink["kind"])
                });
                assert!(!targets.is_empty(), "{name}: no target in {sink}");
                for (host, port) in targets {
                    add(&host, port, format!("bridge {}", bridge["name"]));
                }
            }
        }
        let words: Vec<String> = argv(svc)
            .iter()
            .flat_map(|a| a.split_whitespace().map(str::to_owned).collect::<Vec<_>>())
            .collect();
        let option = |opt: &str| {
            words.iter().enumerate().find_map(|(i, w)| {
                w.strip_prefix(&format!("{opt}="))
                    .or_else(|| (w == opt).then(|| words.get(i + 1).map(String::as_str))?)
            })
        };
        if let (Some(host), Some(port)) = (option("--host"), option("--port")) {
            if let Ok(port) = port.parse() {
                add(host, port, format!("--host {host} --port {port}"));
            }
        }
        for word in &words {
            let value = word.split_once('=').map_or(word.as_str(), |(_, v)| v);
            if let Some((host, port)) = host_port(value, None) {
                if names.contains(host.as_str()) {
                    add(&host, port, format!("`{word}`"));
                }
            }
        }
    }
    out
}

/// The address `service` listens on for `port`, learnt the way that
/// service is configured: a broker from its configuration, Kafka from
/// KAFKA_LISTENERS (whose advertised address must be the service's name),
/// a script mounted from the repository by running it. Anything else
/// fails: the test must not pass what it cannot check.
fn listen_host(compose: &Compose, service: &str, port: u16) -> String {
    let svc = compose
        .service(service)
        .unwrap_or_else(|| panic!("no service {service}"));
    if let Some(config) = compose.broker_config(service, svc) {
        let bind = binds(&toml_value(&config))
            .into_iter()
            .find(|b| b.port() == port)
            .unwrap_or_else(|| panic!("{service}: its configuration does not bind port {port}"));
        return bind.ip().to_string();
    }
    let env = environment(svc);
    if let Some(listeners) = env.get("KAFKA_LISTENERS") {
        let find = |list: &str| {
            list.split(',')
                .filter_map(|l| host_port(l.trim(), None))
                .find(|(_, p)| *p == port)
        };
        let (host, _) = find(listeners)
            .unwrap_or_else(|| panic!("{service}: KAFKA_LISTENERS has no port {port}"));
        let advertised = env
            .get("KAFKA_ADVERTISED_LISTENERS")
            .and_then(|a| find(a))
            .map(|(h, _)| h);
        assert_eq!(
            advertised.as_deref(),
            Some(service),
            "{service}: Kafka must advertise {service}:{port}, the name other containers reach it by"
        );
        return if host.is_empty() {
            "0.0.0.0".into()
        } else {
            host
        };
    }
    let mounted = mounts(svc);
    let argv = argv(svc);
    if argv
        .iter()
        .any(|a| mounted.get(a).is_some_and(|p| p.is_file()))
    {
        return script_bind(service, &argv, &mounted, port).to_string();
    }
    panic!("{service}: cannot tell how it listens on {port}; teach listen_host")
}

/// Kills the child when the test is done with it (or fails).
struct Running(Child);

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Runs a service's command here, its mounted files taken from the
/// repository and the port it serves replaced by 0, and returns the
/// address it listens on: how the script binds when started as compose
/// starts it, its defaults included. The script must print its port at the
/// end of its first line (`listening on 127.0.0.1:PORT`).
fn script_bind(
    service: &str,
    argv: &[String],
    mounted: &BTreeMap<String, PathBuf>,
    port: u16,
) -> IpAddr {
    let port = port.to_string();
    let args: Vec<String> = argv
        .iter()
        .map(|a| match mounted.get(a) {
            Some(host) => host.to_string_lossy().into_owned(),
            None if *a == port => "0".into(),
            None => match a.split_once('=') {
                Some((k, v)) if v == port => format!("{k}=0"),
                _ => a.clone(),
            },
        })
        .collect();
    let mut child = Running(
        Command::new(&args[0])
            .args(&args[1..])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("{service}: run {args:?}: {e}")),
    );
    let stdout = child.0.stdout.take().unwrap();
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let mut line = String::new();
        let _ = BufReader::new(stdout).read_line(&mut line);
        let _ = tx.send(line);
    });
    let line = rx
        .recv_timeout(Duration::from_secs(20))
        .unwrap_or_else(|_| panic!("{service}: {args:?} printed nothing"));
    let digits: String = line
        .trim_end()
        .chars()
        .rev()
        .take_while(char::is_ascii_digit)
        .collect();
    let bound: u16 = digits
        .chars()
        .rev()
        .collect::<String>()
        .parse()
        .unwrap_or_else(|_| panic!("{service}: no port at the end of {line:?}"));
    let found = listening_on(bound);
    drop(child);
    assert_eq!(found.len(), 1, "{service}: sockets on {bound}: {found:?}");
    found[0]
}

/// The local addresses of the TCP sockets listening on `port` here.
fn listening_on(port: u16) -> Vec<IpAddr> {
    let mut found = Vec::new();
    for file in ["/proc/net/tcp", "/proc/net/tcp6"] {
        let text = std::fs::read_to_string(file).unwrap_or_default();
        for line in text.lines().skip(1) {
            let f: Vec<&str> = line.split_whitespace().collect();
            let (Some(local), Some(&"0A")) = (f.get(1), f.get(3)) else {
                continue;
            };
            let Some((addr, p)) = local.split_once(':') else {
                continue;
            };
            if u16::from_str_radix(p, 16) == Ok(port) {
                found.push(proc_net_addr(addr));
            }
        }
    }
    found
}

/// An address as /proc/net/tcp{,6} writes it: 32-bit words in hex, each
/// in the machine's byte order (little-endian here).
fn proc_net_addr(hex: &str) -> IpAddr {
    let bytes: Vec<u8> = hex
        .as_bytes()
        .chunks(8)
        .flat_map(|w| {
            let w = std::str::from_utf8(w).unwrap();
            u32::from_str_radix(w, 16).unwrap().to_le_bytes()
        })
        .collect();
    match <[u8; 16]>::try_from(bytes.as_slice()) {
        Ok(v6) => IpAddr::from(v6),
        Err(_) => IpAddr::from(<[u8; 4]>::try_from(bytes.as_slice()).unwrap()),
    }
}

/// Why a configuration's admin API would answer without a token on an
/// address other machines reach, if it would.
fn tokenless_admin(config: &serde_json::Value) -> Option<String> {
    let bind = admin_bind(config)?;
    let token = ["token_file", "token_env"]
        .iter()
        .any(|k| config["admin"][k].is_string());
    (!token && !bind.ip().to_canonical().is_loopback())
        .then(|| format!("the admin API on {bind} has no token_file or token_env"))
}

#[test]
fn docker_files_name_only_what_exists() {
    let compose = Compose::load();
    let services = compose.services();
    assert!(services.len() >= 4);
    let names: HashSet<&str> = services.iter().map(|(n, _)| n.as_str()).collect();
    for want in ["sluice", "kafka", "sensors", "webhook"] {
        assert!(names.contains(want), "no {want} service");
    }

    // The Dockerfile: what it copies exists, and what it exposes and checks
    // is what the configurations bind.
    let docker = docker();
    let mut built_images = HashSet::new();
    let mut dockerfiles = Vec::new();
    for (name, svc) in services {
        if let Some(build) = svc.get("build") {
            let context = docker.join(build.get("context").and_then(Yaml::scalar).unwrap());
            let file = context.join(build.get("dockerfile").and_then(Yaml::scalar).unwrap());
            assert!(file.exists(), "{name}: {} is missing", file.display());
            dockerfiles.push((context, file));
            built_images.insert(svc.get("image").and_then(Yaml::scalar).unwrap().to_owned());
        }
    }
    assert!(!dockerfiles.is_empty(), "nothing is built");
    let demo_config = std::fs::read_to_string(docker.join("demo.toml")).unwrap();
    for (context, file) in &dockerfiles {
        let text = std::fs::read_to_string(file).unwrap().replace("\\\n", " ");
        let mut copied = 0;
        for line in text.lines().map(str::trim) {
            let Some(args) = line.strip_prefix("COPY ") else {
                continue;
            };
            if args.starts_with("--from") {
                continue;
            }
            let words: Vec<&str> = args.split_whitespace().collect();
            for src in &words[..words.len() - 1] {
                assert!(
                    context.join(src).exists(),
                    "{} copies {src}, which does not exist",
                    file.display()
                );
                copied += 1;
            }
        }
        assert!(copied >= 5, "{}: too few COPY sources", file.display());
        let exposed: BTreeSet<u16> = text
            .lines()
            .filter_map(|l| l.trim().strip_prefix("EXPOSE "))
            .flat_map(|ports| ports.split_whitespace().map(|p| p.parse().unwrap()))
            .collect();
        assert_eq!(exposed, BTreeSet::from([1883, 8883, 8083, 8080]));
        assert_eq!(bound_ports(&demo_config), exposed, "demo.toml binds");
        let health = text
            .lines()
            .find(|l| l.contains("/healthz"))
            .expect("a HEALTHCHECK on /healthz");
        let admin_port = admin_bind(&toml_value(&compose.image_config))
            .expect("the image's configuration binds the admin listener")
            .port();
        assert!(
            health.contains(&format!("127.0.0.1:{admin_port}/healthz")),
            "{health}"
        );
        assert!(text.contains("\nUSER ") && text.contains("VOLUME /data"));
    }

    // Every service: its image is built here or pulled by name, its bind
    // mounts exist, its published ports are bound by the configuration it
    // runs with, and the files it names on the certs volume are made by
    // certs/generate.sh.
    let certs = generate_certs();
    for (name, svc) in services {
        let image = svc.get("image").and_then(Yaml::scalar).unwrap_or("");
        if image.starts_with("sluice") {
            assert!(built_images.contains(image), "{name}: {image} is not built");
        } else {
            assert!(
                image.contains(':') && !image.ends_with(":latest"),
                "{name}: pin the image version ({image:?})"
            );
        }
        for (_, host) in mounts(svc) {
            assert!(
                host.exists(),
                "{name} mounts {}, which does not exist",
                host.display()
            );
        }
        for v in svc.get("volumes").map(Yaml::items).unwrap_or_default() {
            let source = v.split(':').next().unwrap();
            if !source.starts_with('.') && !source.starts_with('/') {
                let declared = compose.doc.get("volumes").map(Yaml::entries).unwrap_or(&[]);
                assert!(
                    declared.iter().any(|(v, _)| v == source),
                    "{name}: volume {source} is not declared"
                );
            }
        }
        let ports = svc.get("ports").map(Yaml::items).unwrap_or_default();
        if !ports.is_empty() {
            let config = compose
                .broker_config(name, svc)
                .unwrap_or_else(|| panic!("{name} publishes ports but runs no broker"));
            let bound = bound_ports(&config);
            for p in &ports {
                let container: u16 = p.rsplit(':').next().unwrap().parse().unwrap();
                assert!(
                    bound.contains(&container),
                    "{name} publishes {p}, but its configuration binds {bound:?}"
                );
                assert!(
                    p.starts_with("127.0.0.1:"),
                    "{name}: publish {p} on 127.0.0.1 only"
                );
            }
        }
        for arg in argv(svc) {
            if let Some(file) = arg.split("/etc/sluice/certs/").nth(1) {
                assert!(
                    certs.path().join("certs").join(file).exists(),
                    "{name} uses {file}, which certs/generate.sh does not make"
                );
            }
        }
    }
}

/// Containers reach each other through their own addresses, never through
/// loopback: a service that others send to (a bridge's sink, the sensors'
/// broker, Kafka) must listen on more than its loopback. The webhook once
/// bound 127.0.0.1 and the demo's alerts went nowhere (issue 24).
#[test]
fn compose_services_listen_where_the_others_reach_them() {
    let compose = Compose::load();
    let links = links(&compose);
    for (from, to) in [
        ("sluice", "webhook"),
        ("sluice", "kafka"),
        ("sensors", "sluice"),
    ] {
        assert!(
            links.iter().any(|l| l.from == from && l.to == to),
            "no link {from} -> {to} found in {links:?}"
        );
    }
    for link in &links {
        let host = listen_host(&compose, &link.to, link.port);
        assert!(
            !is_loopback(&host),
            "{} ({}) connects to {}:{}, but {} listens on {host} there: \
             unreachable from another container",
            link.from,
            link.why,
            link.to,
            link.port,
            link.to
        );
    }
}

/// The demo's webhook keeps loopback as its default (it prints whatever it
/// is sent) and binds every interface when told to, as compose.yaml does.
#[test]
fn the_webhook_receiver_binds_loopback_unless_told() {
    let script = "/app/http_receiver.py".to_owned();
    let mounted = BTreeMap::from([(
        script.clone(),
        repo().join("examples/demo/http_receiver.py"),
    )]);
    let run = |extra: &[&str]| {
        let mut argv = vec!["python3".to_owned(), script.clone()];
        argv.extend(extra.iter().map(|s| s.to_string()));
        script_bind("webhook", &argv, &mounted, 9000)
    };
    assert!(run(&["9000"]).is_loopback());
    assert!(run(&["--host", "0.0.0.0", "9000"]).is_unspecified());
}

/// No configuration in docker/ serves a tokenless admin API where other
/// machines reach it: the image's default binds every interface (that is
/// what publishing a port needs) and so carries a token, generated on the
/// first start.
#[test]
fn docker_configs_never_serve_a_tokenless_admin_api_off_loopback() {
    let compose = Compose::load();
    let configs = docker_configs(&compose);
    assert!(configs.len() >= 2);
    for (what, config) in &configs {
        if let Some(why) = tokenless_admin(config) {
            panic!("{what}: {why}");
        }
    }
    let image = toml_value(&compose.image_config);
    assert_eq!(image["admin"]["generate_token"], true, "{image}");
    // The check itself: it refuses what it is there to refuse.
    let open = "[admin]\nbind = \"0.0.0.0:8080\"\n";
    assert!(tokenless_admin(&toml_value(open)).is_some());
    assert!(tokenless_admin(&toml_value(&format!("{open}token_env = \"T\"\n"))).is_none());
    assert!(tokenless_admin(&toml_value("[admin]\nbind = \"127.0.0.1:8080\"\n")).is_none());
    assert!(tokenless_admin(&toml_value(
        "[admin]\nenabled = false\nbind = \"[::]:8080\"\n"
    ))
    .is_none());
}

/// The configurations in docker/: the image's default and every one a
/// compose service runs the broker with.
fn docker_configs(compose: &Compose) -> Vec<(String, serde_json::Value)> {
    let mut configs = vec![(
        "the image's default".to_owned(),
        toml_value(&compose.image_config),
    )];
    for (name, svc) in compose.services() {
        if let Some(config) = compose.broker_config(name, svc) {
            configs.push((format!("service {name}"), toml_value(&config)));
        }
    }
    configs
}

/// The store refuses a data directory that holds files it does not know
/// and no format marker yet: a token generated there by a first start in
/// memory, or a token or password file put there before the first start,
/// would keep the broker from ever starting on that volume. So the files
/// the operator or the broker put in the volume stay beside the store.
#[test]
fn docker_configs_keep_their_files_out_of_the_store() {
    let compose = Compose::load();
    for (what, config) in docker_configs(&compose) {
        let data_dir = config["data_dir"]
            .as_str()
            .unwrap_or_else(|| panic!("{what}: no data_dir"));
        let files = [
            &config["admin"]["token_file"],
            &config["password_file"],
            &config["acl_file"],
        ];
        for file in files.iter().filter_map(|f| f.as_str()) {
            assert!(
                !std::path::Path::new(file).starts_with(data_dir),
                "{what}: {file} is inside data_dir {data_dir}"
            );
        }
    }
}

/// The image's default configuration, run as the image runs it (paths
/// moved into a temporary directory, ports picked free): the first start
/// creates the admin token, logs it once and requires it; the second reads
/// it and says nothing; anonymous MQTT on every interface is warned about.
#[test]
fn the_image_generates_its_admin_token_once() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().to_string_lossy().into_owned();
    let text = std::fs::read_to_string(docker().join("sluice.toml"))
        .unwrap()
        .replace("\"/data", &format!("\"{data}"));
    let text = text.replace(":1883\"", ":0\"").replace(":8080\"", ":0\"");
    assert!(!text.contains("\"/data"), "{text}");
    let path = dir.path().join("sluice.toml");
    std::fs::write(&path, &text).unwrap();
    let config = path.to_string_lossy().into_owned();
    let s = Sluice::start_args(&["--config", &config, "--admin-bind", "0.0.0.0:0"], &[]);

    let generated: Vec<&String> = s
        .startup_log
        .iter()
        .filter(|l| l.contains("admin token generated"))
        .collect();
    assert_eq!(generated.len(), 1, "{:#?}", s.startup_log);
    let token = std::fs::read_to_string(dir.path().join("admin-token")).unwrap();
    let token = token.trim();
    assert!(generated[0].contains(token), "{}", generated[0]);
    assert!(
        s.startup_log
            .iter()
            .any(|l| l.contains("WARN") && l.contains("anonymous clients are accepted")),
        "no warning about anonymous MQTT off loopback: {:#?}",
        s.startup_log
    );
    assert_eq!(s.admin("GET", "/api/v1/broker", None, None).0, 401);
    assert_eq!(s.admin("GET", "/api/v1/broker", Some(token), None).0, 200);
    assert_eq!(s.admin("GET", "/healthz", None, None).0, 200);

    let s = s.restart();
    assert!(
        !s.startup_log.iter().any(|l| l.contains(token)),
        "the token was printed again: {:#?}",
        s.startup_log
    );
    assert_eq!(s.admin("GET", "/api/v1/broker", Some(token), None).0, 200);

    // On loopback (the built-in default) anonymous MQTT is not warned about.
    let local = Sluice::start();
    assert!(
        !local.startup_log.iter().any(|l| l.contains("anonymous")),
        "{:#?}",
        local.startup_log
    );
}

/// docker/cluster.compose.yaml: three nodes on three NATS servers. Every
/// node mounts a configuration that exists and that the broker accepts
/// under its node name, names only NATS services of the file (on their
/// client port), publishes its ports on loopback only, and the node names
/// differ.
#[test]
fn the_cluster_compose_file_runs_three_distinct_nodes_on_its_nats() {
    let doc = parse_yaml(&std::fs::read_to_string(docker().join("cluster.compose.yaml")).unwrap());
    let services = doc.get("services").expect("services").entries();
    let names: HashSet<&str> = services.iter().map(|(n, _)| n.as_str()).collect();
    let mut nodes = Vec::new();
    for (name, svc) in services {
        let image = svc.get("image").and_then(Yaml::scalar).unwrap_or("");
        if !image.starts_with("sluice") {
            continue;
        }
        let command = svc.get("command").map(Yaml::items).unwrap_or_default();
        let i = command
            .iter()
            .position(|a| a == "--config")
            .expect("--config");
        let host = mounts(svc)
            .remove(&command[i + 1])
            .unwrap_or_else(|| panic!("{name}: {} is not mounted", command[i + 1]));
        let node_name = environment(svc)
            .remove("SLUICE__CLUSTER__NODE_NAME")
            .unwrap_or_else(|| panic!("{name}: no node name"));
        let out = std::process::Command::new(SLUICE)
            .arg("check-config")
            .arg(&host)
            .env("SLUICE__CLUSTER__NODE_NAME", &node_name)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{name}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let config = toml_value(&std::fs::read_to_string(&host).unwrap());
        for url in config["cluster"]["servers"].as_array().expect("servers") {
            let (h, port) = host_port(url.as_str().unwrap(), None).expect("host:port");
            assert!(
                names.contains(h.as_str()) && h.starts_with("nats"),
                "{name}: {url}"
            );
            assert_eq!(port, 4222, "{name}: {url}");
        }
        for p in svc.get("ports").map(Yaml::items).unwrap_or_default() {
            assert!(
                p.starts_with("127.0.0.1:"),
                "{name}: port {p} not on loopback"
            );
        }
        nodes.push(node_name);
    }
    assert_eq!(nodes.len(), 3, "{nodes:?}");
    nodes.sort();
    nodes.dedup();
    assert_eq!(nodes.len(), 3, "node names must differ");
}
