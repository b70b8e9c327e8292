//! Bridges inside the broker. A bridge is a subscriber in the same topic
//! tree as any client (a persistent session named `$bridge/NAME`), so what
//! reaches it obeys the same routing and durability rules: a QoS 1 message
//! is in the store before its publisher gets PUBACK. The intake task moves
//! messages from that session through the transform into the bridge's disk
//! buffer and only then acknowledges them to the session; the delivery task
//! drains the buffer into the sink, resending from the first record not
//! acknowledged by the far side.
//!
//! Layout: `running` (one bridge's shared state, pause and stop), `intake`,
//! `inbound` (an MQTT bridge's in direction: remote messages published
//! here),
//! `delivery` (what the delivery loop's outcomes change here), `stats`
//! (counters and the status the admin API shows). The configuration, its
//! checks, the sinks it builds and the delivery loop are the bridges
//! crate's (`sluice_bridges::config`, `sluice_bridges::delivery`). This file starts, stops
//! and reloads the set of bridges.

mod delivery;
mod inbound;
mod intake;
mod running;
mod stats;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytestring::ByteString;
use parking_lot::Mutex;
use sluice_bridges::buffer::{Buffer, BufferConfig};
use sluice_bridges::transform::runner::Runner;
use sluice_bridges::transform::Transform;
use sluice_bridges::{AnySink, CLIENT_ID_PREFIX};
use tokio::sync::{watch, Notify};

pub use running::{RunningBridge, Shared};
pub use stats::{BridgeStats, BridgeStatus};

use crate::broker::{Broker, SessionSlot, Subscription};
use crate::codec::{ProtocolVersion, QoS, RetainHandling, SubscriptionOptions};
use crate::config::{BridgeAck, BridgeConfig};
use crate::session::NEVER;
use crate::topic::TopicFilter;

#[derive(Debug, thiserror::Error)]
pub enum BridgeStartError {
    #[error("bridge `{name}`: {message}")]
    Setup { name: String, message: String },
}

/// What a reload changed.
#[derive(Debug, Default, Clone, PartialEq, Eq, serde::Serialize)]
pub struct BridgeChanges {
    pub added: Vec<String>,
    pub removed: Vec<String>,
    pub restarted: Vec<String>,
}

/// The running bridges, by name.
pub struct Bridges {
    broker: Arc<Broker>,
    data_dir: PathBuf,
    running: tokio::sync::Mutex<Vec<RunningBridge>>,
    /// The same bridges' shared state, readable without awaiting (metrics).
    shared: Mutex<HashMap<String, Arc<Shared>>>,
}

impl Bridges {
    /// Opens every configured bridge's buffer and session and starts its
    /// tasks. A bridge removed from the configuration leaves its session
    /// behind in the store (it would collect messages forever): it is
    /// removed; its buffer directory stays.
    pub async fn start_all(
        broker: &Arc<Broker>,
        configs: &[BridgeConfig],
        data_dir: &Path,
    ) -> Result<Arc<Bridges>, BridgeStartError> {
        for id in broker.session_ids() {
            let Some(name) = id.strip_prefix(CLIENT_ID_PREFIX) else {
                continue;
            };
            if !configs.iter().any(|b| b.name == name) {
                remove_bridge_session(broker, name);
            }
        }
        let bridges = Arc::new(Bridges {
            broker: Arc::clone(broker),
            data_dir: data_dir.to_path_buf(),
            running: tokio::sync::Mutex::new(Vec::new()),
            shared: Mutex::new(HashMap::new()),
        });
        {
            let mut running = bridges.running.lock().await;
            for b in configs {
                let r = start(broker, b, prepare(b, data_dir)?, data_dir)?;
                bridges
                    .shared
                    .lock()
                    .insert(b.name.clone(), Arc::clone(&r.shared));
                running.push(r);
            }
        }
        Ok(bridges)
    }

    /// Status of every bridge, by name.
    pub fn statuses(&self) -> Vec<BridgeStatus> {
        let mut out: Vec<BridgeStatus> = self.shared.lock().values().map(|s| s.status()).collect();
        out.sort_by(|a, b| a.name.cmp(&b.name));
        out
    }

    pub fn status(&self, name: &str) -> Option<BridgeStatus> {
        self.shared.lock().get(name).map(|s| s.status())
    }

    /// Pauses (true) or resumes delivery of one bridge; false if unknown.
    pub async fn set_paused(&self, name: &str, paused: bool) -> bool {
        let running = self.running.lock().await;
        match running.iter().find(|r| r.name() == name) {
            Some(r) if paused => {
                r.pause();
                tracing::info!(bridge = %name, "bridge paused");
                true
            }
            Some(r) => {
                r.resume();
                tracing::info!(bridge = %name, "bridge resumed");
                true
            }
            None => false,
        }
    }

    /// Brings the running set in line with `configs`: new bridges start,
    /// removed ones stop (their session goes, their buffer stays on disk),
    /// changed ones restart on the same buffer so nothing buffered is lost.
    /// Every new bridge is built before anything stops, so a bad definition
    /// leaves the running set untouched.
    pub async fn reload(
        &self,
        configs: &[BridgeConfig],
    ) -> Result<BridgeChanges, BridgeStartError> {
        let mut running = self.running.lock().await;
        let mut changes = BridgeChanges::default();
        // Only what is new or changed is built (a Kafka producer starts
        // threads); an unchanged bridge keeps running untouched.
        let mut prepared: HashMap<String, Prepared> = HashMap::new();
        for c in configs {
            let unchanged = running
                .iter()
                .any(|r| r.name() == c.name && r.shared.config == *c);
            if !unchanged {
                prepared.insert(c.name.clone(), prepare(c, &self.data_dir)?);
            }
        }
        let old: Vec<RunningBridge> = std::mem::take(&mut *running);
        let mut keep = Vec::new();
        for r in old {
            match configs.iter().find(|c| c.name == r.name()) {
                Some(c) if *c == r.shared.config => keep.push(r),
                Some(_) => {
                    changes.restarted.push(r.name().to_owned());
                    r.stop().await;
                }
                None => {
                    let name = r.name().to_owned();
                    r.stop().await;
                    remove_bridge_session(&self.broker, &name);
                    self.shared.lock().remove(&name);
                    changes.removed.push(name);
                }
            }
        }
        for c in configs {
            let Some(p) = prepared.remove(&c.name) else {
                continue;
            };
            if !changes.restarted.contains(&c.name) {
                changes.added.push(c.name.clone());
            }
            match start(&self.broker, c, p, &self.data_dir) {
                Ok(r) => {
                    self.shared
                        .lock()
                        .insert(c.name.clone(), Arc::clone(&r.shared));
                    keep.push(r);
                }
                Err(e) => {
                    tracing::error!(error = %e, "bridge could not start after reload");
                }
            }
        }
        *running = keep;
        Ok(changes)
    }

    /// Waits until every bridge has delivered everything it holds, or
    /// `timeout` passes; returns the records still buffered.
    pub async fn drain(&self, timeout: Duration) -> u64 {
        let deadline = Instant::now() + timeout;
        let shared: Vec<Arc<Shared>> = self.shared.lock().values().cloned().collect();
        loop {
            if shared.iter().all(|s| s.is_drained()) {
                return 0;
            }
            if Instant::now() >= deadline {
                return shared.iter().map(|s| s.buffer.lock().len()).sum();
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Stops every bridge (buffers synced; what is left is delivered after
    /// the next start).
    pub async fn stop_all(&self) {
        let running = std::mem::take(&mut *self.running.lock().await);
        for r in running {
            r.stop().await;
        }
    }
}

fn remove_bridge_session(broker: &Arc<Broker>, name: &str) {
    let id = ByteString::from(format!("{CLIENT_ID_PREFIX}{name}"));
    if let Some(slot) = broker.find_session(&id) {
        tracing::info!(bridge = %name, "bridge no longer configured: its session is removed (its buffer directory stays)");
        broker.remove_session(&slot);
    }
}

/// What a bridge needs that can fail on its definition alone: checked
/// before anything running is touched.
/// The bridge's own directory: its buffer, and what its sink keeps.
fn bridge_dir(data_dir: &Path, name: &str) -> PathBuf {
    data_dir.join("bridges").join(name)
}

struct Prepared {
    transform: Transform,
    sink: AnySink,
}

fn prepare(cfg: &BridgeConfig, data_dir: &Path) -> Result<Prepared, BridgeStartError> {
    let err = |message: String| BridgeStartError::Setup {
        name: cfg.name.clone(),
        message,
    };
    Ok(Prepared {
        transform: cfg.compile_transform().map_err(|e| err(e.to_string()))?,
        sink: cfg
            .sink
            .build(&bridge_dir(data_dir, &cfg.name))
            .map_err(|e| err(e.to_string()))?,
    })
}

fn start(
    broker: &Arc<Broker>,
    cfg: &BridgeConfig,
    prepared: Prepared,
    data_dir: &Path,
) -> Result<RunningBridge, BridgeStartError> {
    let err = |message: String| BridgeStartError::Setup {
        name: cfg.name.clone(),
        message,
    };
    let Prepared {
        transform,
        mut sink,
    } = prepared;
    let inbound_rx = sink.take_inbound();
    let mut buffer_cfg = BufferConfig::new(bridge_dir(data_dir, &cfg.name));
    buffer_cfg.max_bytes = cfg.max_bytes;
    buffer_cfg.segment_bytes = (cfg.max_bytes / 8).clamp(64 * 1024, 16 << 20);
    buffer_cfg.full_policy = cfg.full_policy;
    buffer_cfg.dead_letter_max_bytes = cfg.dead_letter_max_bytes;
    buffer_cfg.dead_letter_policy = cfg.dead_letter_full_policy;
    let buffer = Buffer::open(buffer_cfg).map_err(|e| err(e.to_string()))?;
    let recovered = buffer.len();

    let slot = attach_session(broker, cfg).map_err(err)?;
    tracing::info!(bridge = %cfg.name, sink = cfg.sink.kind(), buffered = recovered, filters = ?cfg.filters, "bridge started");
    let (stop_tx, stop_rx) = watch::channel(false);
    let shared = Arc::new(Shared {
        name: cfg.name.clone(),
        config: cfg.clone(),
        buffer: Arc::new(Mutex::new(buffer)),
        slot,
        stats: BridgeStats::default(),
        paused: std::sync::atomic::AtomicBool::new(false),
        wake: Notify::new(),
        sink_acks: Mutex::new(std::collections::VecDeque::new()),
        failing: Mutex::new(None),
        failed: Mutex::new(None),
        dead_letter_log: Mutex::new(running::LogBudget::default()),
        stop: stop_rx,
        link: sink.link_status(),
        kafka: sink.kafka_status(),
    });
    let mut tasks = vec![
        tokio::spawn(intake::run(
            Arc::clone(&shared),
            Runner::new(&cfg.name, transform),
            broker.store().clone(),
        )),
        tokio::spawn(sluice_bridges::delivery::run(sink, Arc::clone(&shared))),
    ];
    if let Some(rx) = inbound_rx {
        tasks.push(tokio::spawn(inbound::run(
            Arc::clone(&shared),
            Arc::clone(broker),
            rx,
        )));
    }
    Ok(RunningBridge {
        shared,
        stop: stop_tx,
        tasks,
    })
}

/// The bridge's persistent session with exactly the configured filters.
fn attach_session(broker: &Arc<Broker>, cfg: &BridgeConfig) -> Result<Arc<SessionSlot>, String> {
    let client_id = ByteString::from(cfg.client_id());
    let (slot, _) = broker.open_session(&client_id, false);
    {
        let mut c = slot.control.lock();
        c.protocol = Some(ProtocolVersion::V5);
        c.session_expiry = NEVER;
        c.generation += 1;
        c.username = cfg.username.as_deref().map(ByteString::from);
    }
    slot.set_acl_exempt(cfg.username.is_none());
    slot.set_persistent(broker.store().is_enabled());
    slot.set_ack_on_sink(cfg.ack == BridgeAck::Sink);
    slot.set_bridge(true);
    slot.set_online(true);
    let max_levels = broker.config.limits.max_topic_levels;
    let wanted: Vec<TopicFilter> = cfg
        .filters
        .iter()
        .map(|f| {
            TopicFilter::parse(f.as_str().into(), max_levels).map_err(|e| format!("`{f}`: {e}"))
        })
        .collect::<Result<_, _>>()?;
    let stale: Vec<ByteString> = slot
        .subscriptions
        .lock()
        .keys()
        .filter(|k| !wanted.iter().any(|w| w.raw == **k))
        .cloned()
        .collect();
    for raw in stale {
        broker.unsubscribe(&slot, &raw);
    }
    let qos = if cfg.qos == 0 {
        QoS::AtMostOnce
    } else {
        QoS::AtLeastOnce
    };
    for filter in wanted {
        let options = SubscriptionOptions {
            qos,
            no_local: false,
            retain_as_published: true,
            // A bridge forwards traffic as it happens, not the retained
            // history every time the broker starts.
            retain_handling: RetainHandling::DoNotSend,
        };
        broker.subscribe(
            &slot,
            Subscription {
                filter,
                options,
                identifier: None,
            },
            Instant::now(),
        );
    }
    broker.persist_session(&slot, 0);
    Ok(slot)
}
