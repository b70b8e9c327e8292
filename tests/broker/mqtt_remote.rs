//! A remote MQTT broker for the MQTT bridge's tests: Debian's `mosquitto`
//! on 127.0.0.1, persistence on, in its own directory; stopped, resumed,
//! killed and restarted by the tests.

use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub(crate) struct Mosquitto {
    child: Child,
    pub(crate) port: u16,
    conf: PathBuf,
    _dir: tempfile::TempDir,
}

/// A port free right now (the remote binds it a moment later).
fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

fn mosquitto_binary() -> &'static str {
    if std::path::Path::new("/usr/sbin/mosquitto").exists() {
        "/usr/sbin/mosquitto"
    } else {
        "mosquitto"
    }
}

impl Mosquitto {
    pub(crate) fn start() -> Mosquitto {
        let dir = tempfile::tempdir().expect("temp dir");
        let port = free_port();
        let conf = dir.path().join("mosquitto.conf");
        std::fs::write(
            &conf,
            format!(
                "listener {port} 127.0.0.1\nallow_anonymous true\npersistence true\nuser root\n\
                 persistence_location {}/\nmax_queued_messages 100000\nlog_dest file {}/mosquitto.log\nlog_type all\n",
                dir.path().display(),
                dir.path().display()
            ),
        )
        .expect("write mosquitto.conf");
        let child = Self::spawn(&conf, port);
        Mosquitto {
            child,
            port,
            conf,
            _dir: dir,
        }
    }

    fn spawn(conf: &std::path::Path, port: u16) -> Child {
        let child = Command::new(mosquitto_binary())
            .arg("-c")
            .arg(conf)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start mosquitto (tests/install-deps.sh installs it)");
        let deadline = Instant::now() + Duration::from_secs(10);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(Instant::now() < deadline, "mosquitto did not listen");
            std::thread::sleep(Duration::from_millis(20));
        }
        child
    }

    /// The last `n` lines of the remote's log, for failure messages.
    pub(crate) fn log_tail(&self, n: usize) -> String {
        let text =
            std::fs::read_to_string(self._dir.path().join("mosquitto.log")).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(n)..].join("\n")
    }

    fn signal(&self, sig: &str) {
        let _ = Command::new("kill")
            .args([sig, &self.child.id().to_string()])
            .status();
    }

    /// Freezes the remote (SIGSTOP): connections stay open, nothing answers.
    pub(crate) fn pause(&self) {
        self.signal("-STOP");
    }

    pub(crate) fn resume(&self) {
        self.signal("-CONT");
    }

    /// Stops it gracefully (SIGTERM: mosquitto saves its sessions) and
    /// starts it again on the same port and directory.
    pub(crate) fn restart(&mut self) {
        self.signal("-TERM");
        let _ = self.child.wait();
        self.child = Self::spawn(&self.conf, self.port);
    }
}

impl Drop for Mosquitto {
    fn drop(&mut self) {
        self.resume();
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
