//! The MQTT sink: store-and-forward from the bridge's durable buffer to a
//! remote MQTT broker (3.1.1 or 5.0, TCP or TLS), the edge-to-cloud link.
//!
//! A record leaves the buffer only when the remote acknowledged it: PUBACK
//! for QoS 1, PUBCOMP for QoS 2; QoS 0 once written. The connection keeps a
//! session on the remote (clean start off, a session expiry), so the
//! remote's QoS 2 state survives our reconnects.
//!
//! **QoS 2 stays exactly once across reconnects and our own crashes.** A
//! record's packet id is a function of its record id ([`packet_id_of`]):
//! whenever the record goes out again (a new connection, a restart of the
//! broker, a batch resent after an error) it carries the same packet id,
//! which the remote recognises as a duplicate while it holds it. A record
//! whose PUBREC came back is written to the release log before its PUBREL
//! is sent, and is from then on resumed with PUBREL only (see `releases`);
//! records the remote completed within a batch that is resent are skipped.
//! QoS 1 is at least once: a record whose PUBACK was lost goes again.
//!
//! Why not rumqttc (a requested package): its event loop owns packet ids
//! (ids above its in-flight window are refused, no way to resume a PUBREL
//! it did not send in this process), drops everything pending when the
//! remote lost the session, turns an acknowledgement it does not expect
//! (normal after a restart) into a connection error, and has separate 3.1.1
//! and 5.0 APIs. The bridge speaks through the broker's own codec instead
//! (`sluice-codec`, fuzzed, both versions), with a small connection task.
//!
//! The in direction (`[[bridges.sink.inbound]]`): the bridge subscribes on
//! the remote (MQTT 5: no-local) and hands each message to the broker,
//! which publishes it as the bridge; the remote gets PUBACK/PUBREC only
//! once the message is durable locally. The out direction does not send
//! back what came in through the same bridge.
//!
//! Layout: `config` (the `[bridges.sink]` keys), `inbound`, `tls`, `link` (one
//! connection: dial, CONNECT/CONNACK, framing), `outgoing` (record →
//! PUBLISH), `releases` (the QoS 2 release log), `link_task` (the task that
//! owns the connection and carries batches), `status`.

mod config;
mod inbound;
mod link;
mod link_task;
mod liveness;
mod outgoing;
mod releases;
mod status;
mod tls;

use std::path::{Path, PathBuf};
use std::sync::Arc;

use bytes::Bytes;
use parking_lot::Mutex;
use sluice_codec::PacketId;
use tokio::sync::{mpsc, oneshot};

pub use config::{
    MqttConfigError, MqttSinkConfig, RemoteProtocol, RemoteTls, RetainPolicy, MAX_INBOUND_ROUTES,
};
pub use inbound::{Inbound, InboundOutcome, InboundRoute};
pub use outgoing::{LOOP_MARKER, MESSAGE_ID_PROPERTY};
pub use status::{LinkReport, LinkStatus};

use crate::record::Record;
use crate::sink::{Sink, SinkError};
use link::Dialer;
use link_task::{Deliver, InboundLink, LinkTask};
use releases::ReleaseLog;

/// Packet ids 1..=this carry bridged messages; the ids above are left for
/// the bridge's own SUBSCRIBE and UNSUBSCRIBE packets.
pub const MAX_PUBLISH_PACKET_ID: u16 = 65_000;

/// The packet id record `id` always goes out with.
pub fn packet_id_of(id: u64) -> PacketId {
    let n = (id % u64::from(MAX_PUBLISH_PACKET_ID)) as u16 + 1;
    PacketId::new(n).unwrap_or(PacketId::MIN)
}

/// Why the sink could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum MqttSinkError {
    #[error("sink.{}: {}", .0.key, .0.message)]
    Config(#[from] MqttConfigError),
    #[error("cannot open the QoS 2 release log in {dir}: {source}")]
    ReleaseLog { dir: String, source: std::io::Error },
}

/// Delivers batches through a [`LinkTask`], started when the delivery
/// loop starts ([`Sink::start`]): not when the sink is built, which on a
/// reload happens while the bridge's previous sink still runs (two links
/// under one client id would take the session from each other, and the
/// release log must have one writer).
pub struct MqttSink {
    cfg: MqttSinkConfig,
    state_dir: PathBuf,
    tls: Option<tokio_rustls::TlsConnector>,
    password: Option<Bytes>,
    tx: Option<mpsc::Sender<Deliver>>,
    /// Why the link task could not start (the release log did not open).
    broken: Option<String>,
    status: Arc<LinkStatus>,
    /// The in direction, until the link task takes it.
    inbound: Option<InboundLink>,
    /// The broker's end of the in direction, until the broker takes it.
    inbound_rx: Option<mpsc::Receiver<Inbound>>,
}

/// Records handed to the link task at once (see `max_batch`).
const BATCH_RECORDS: usize = 2000;

/// Messages from the remote waiting for the broker: bounded, and above
/// the receive maximum the bridge announces, so QoS 1/2 always fit.
const INBOUND_QUEUE: usize = 1024;

impl MqttSink {
    /// Checks the settings (TLS files, password) and that `state_dir`, the
    /// bridge's buffer directory where the release log lives, can be made.
    pub fn new(cfg: MqttSinkConfig, state_dir: &Path) -> Result<MqttSink, MqttSinkError> {
        cfg.check()?;
        let tls = match &cfg.tls {
            Some(t) => Some(tls::connector(t).map_err(|message| MqttConfigError {
                key: "tls",
                message,
            })?),
            None => None,
        };
        let password = cfg.password()?.map(Bytes::from);
        std::fs::create_dir_all(state_dir).map_err(|source| MqttSinkError::ReleaseLog {
            dir: state_dir.display().to_string(),
            source,
        })?;
        let (inbound, inbound_rx) = if cfg.inbound.is_empty() {
            (None, None)
        } else {
            let routes = inbound::Routes::new(&cfg.inbound).map_err(|message| MqttConfigError {
                key: "inbound",
                message,
            })?;
            let (tx, rx) = mpsc::channel(INBOUND_QUEUE);
            let link = InboundLink {
                subscriptions: cfg.inbound.clone(),
                routes,
                tx,
            };
            (Some(link), Some(rx))
        };
        Ok(MqttSink {
            cfg,
            state_dir: state_dir.to_owned(),
            tls,
            password,
            tx: None,
            broken: None,
            status: Arc::new(LinkStatus::default()),
            inbound,
            inbound_rx,
        })
    }

    /// The broker's end of the in direction (once): messages from the
    /// remote to publish locally, each answered when durable.
    pub fn take_inbound(&mut self) -> Option<mpsc::Receiver<Inbound>> {
        self.inbound_rx.take()
    }

    /// What the link reports (connected, session present, errors).
    pub fn status(&self) -> Arc<LinkStatus> {
        Arc::clone(&self.status)
    }
}

impl Sink for MqttSink {
    fn start(&mut self) {
        if self.tx.is_some() {
            return;
        }
        let releases = match ReleaseLog::open(&self.state_dir) {
            Ok(r) => r,
            Err(e) => {
                let why = format!(
                    "cannot open the QoS 2 release log in {}: {e}",
                    self.state_dir.display()
                );
                tracing::error!(error = %why, "mqtt bridge cannot start");
                self.status.set_error(why.clone());
                self.broken = Some(why);
                return;
            }
        };
        let (tx, rx) = mpsc::channel(1);
        let dialer = Dialer {
            cfg: self.cfg.clone(),
            tls: self.tls.clone(),
            password: self.password.clone(),
        };
        let task = LinkTask::new(
            dialer,
            Arc::new(Mutex::new(releases)),
            Arc::clone(&self.status),
            rx,
            self.inbound.take(),
        );
        tokio::spawn(task.run());
        self.tx = Some(tx);
    }

    async fn send(&mut self, batch: &[Record]) -> Result<(), SinkError> {
        self.start();
        let Some(tx) = &self.tx else {
            let why = self.broken.clone().unwrap_or_default();
            return Err(SinkError::Retryable(why));
        };
        let batch = batch
            .iter()
            .map(|r| outgoing::outgoing(r, &self.cfg))
            .collect::<Result<Vec<_>, _>>()
            .map_err(SinkError::Permanent)?;
        let (done, answer) = oneshot::channel();
        let ended = || SinkError::Retryable("the bridge's link task ended".into());
        if tx.send(Deliver { batch, done }).await.is_err() {
            return Err(ended());
        }
        answer.await.unwrap_or_else(|_| Err(ended()))
    }

    fn kind(&self) -> &'static str {
        "mqtt"
    }

    /// Far more than the in-flight window: the buffer's cursor is written
    /// (and synced) once per batch, which at 100 records per batch held
    /// the bridge to ~1.7k messages/s. Within a batch the window slides.
    fn max_batch(&self) -> usize {
        BATCH_RECORDS.max(usize::from(self.cfg.max_in_flight))
    }
}

#[cfg(test)]
mod tests;
