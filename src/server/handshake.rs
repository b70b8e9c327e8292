//! The CONNECT → CONNACK exchange (3.1, 3.2): client id rules, session
//! takeover and resumption, and the v5 properties that set the limits of
//! the connection.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use bytestring::ByteString;
use tokio::sync::{oneshot, OwnedMutexGuard};

use super::connection::Origin;
use super::reason_text::{because, because_of};
use crate::auth::Access;
use crate::broker::{AccessControl, Broker, SessionSlot};
use crate::codec::{owned_string, ConnAck, Connect, Properties, ProtocolVersion, ReasonCode};
use crate::config::SessionTakeover;
use crate::session::{negotiate_keep_alive, NEVER};

/// What the connection keeps from a successful CONNECT.
pub struct Attached {
    pub slot: Arc<SessionSlot>,
    pub guard: OwnedMutexGuard<()>,
    pub kick: oneshot::Receiver<ReasonCode>,
    pub connack: ConnAck,
    pub keep_alive: u16,
    pub session_expiry_requested_zero: bool,
    /// Durable once the session's record is on disk; CONNACK waits for it.
    pub ticket: crate::store::Ticket,
    /// The authenticated user name (or certificate identity), for the ACL.
    pub username: Option<ByteString>,
}

/// A refusal: the CONNACK to send before closing.
pub struct Refused(pub ConnAck);

fn refuse(code: ReasonCode) -> Refused {
    Refused(ConnAck {
        session_present: false,
        code,
        properties: because(code),
    })
}

/// A refusal whose code alone would not say which rule refused.
fn refuse_because(code: ReasonCode, why: &'static str) -> Refused {
    Refused(ConnAck {
        session_present: false,
        code,
        properties: because_of(why),
    })
}

static ASSIGNED_IDS: AtomicU64 = AtomicU64::new(0);

/// A client id for clients that sent an empty one; unique within this run
/// and unlikely to collide with ids of earlier runs.
fn assign_client_id() -> ByteString {
    let n = ASSIGNED_IDS.fetch_add(1, Ordering::Relaxed);
    let t = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_micros())
        .unwrap_or(0);
    ByteString::from(format!("sluice-{t:x}-{n}"))
}

/// Validates CONNECT, takes over any connection of the same client id,
/// opens or resumes the session and builds the CONNACK.
pub async fn attach(
    broker: &Arc<Broker>,
    connect: &Connect,
    origin: &Origin,
) -> Result<Attached, Refused> {
    let limits = &broker.config.limits;
    let v5 = connect.protocol.is_v5();
    if connect.properties.authentication_method.is_some() {
        // No enhanced authentication method is offered (yet).
        return Err(refuse(ReasonCode::BadAuthenticationMethod));
    }
    let access = broker.access();
    // Owned copies: the session keeps them, the CONNECT may be a megabyte.
    let username = authenticate(broker, connect, origin, &access)
        .map_err(refuse)?
        .map(|u| owned_string(&u));
    let mut assigned = None;
    let client_id = if connect.client_id.is_empty() {
        if !v5 && !connect.clean_start {
            return Err(refuse(ReasonCode::ClientIdentifierNotValid));
        }
        let id = assign_client_id();
        assigned = Some(id.clone());
        id
    } else {
        if connect.client_id.len() > 65_535
            || connect
                .client_id
                .starts_with(sluice_bridges::CLIENT_ID_PREFIX)
        {
            // Bridge sessions are the broker's own.
            return Err(refuse(ReasonCode::ClientIdentifierNotValid));
        }
        owned_string(&connect.client_id)
    };

    // Session expiry: v3.1.1 clean session ends with the connection, a
    // persistent one never expires; v5 says it in CONNECT, capped by config.
    let requested_expiry = if v5 {
        connect.properties.session_expiry_interval.unwrap_or(0)
    } else if connect.clean_start {
        0
    } else {
        NEVER
    };
    let session_expiry = requested_expiry.min(limits.max_session_expiry);

    if let Some(will) = &connect.will {
        check_will_topic(&will.topic, limits, v5)
            .map_err(|code| refuse_because(code, "will topic not allowed"))?;
    }
    if let (Some(acl), Some(will)) = (&access.acl, &connect.will) {
        if !acl.check_topic(&client_id, username.as_deref(), &will.topic, Access::Write) {
            tracing::info!(client_id = %client_id, topic = %will.topic, "will topic not writable for this client");
            return Err(refuse_because(
                ReasonCode::NotAuthorized,
                "will topic not writable for this client",
            ));
        }
    }

    // A session belongs to the identity that created it (checked before
    // the current connection is told to leave).
    let clean_start = match session_owner_check(broker, &client_id, username.as_ref()) {
        OwnerCheck::Same => connect.clean_start,
        OwnerCheck::ForeignDiscard => true,
        OwnerCheck::ForeignRefused => {
            tracing::info!(client_id = %client_id, "client id belongs to a session of another identity");
            broker
                .stats
                .takeover_refused
                .fetch_add(1, Ordering::Relaxed);
            return Err(refuse_because(
                ReasonCode::NotAuthorized,
                "client id in use by a session of another identity",
            ));
        }
    };

    if !broker.admits_session(&client_id) {
        tracing::warn!(client_id = %client_id, max_sessions = limits.max_sessions, "session refused: max_sessions reached");
        return Err(refuse(if v5 {
            ReasonCode::QuotaExceeded
        } else {
            ReasonCode::ServerUnavailable
        }));
    }
    let takeover_guard = take_over(broker, &client_id).await;
    let (slot, session_present) = broker.open_session(&client_id, clean_start);
    let guard = match takeover_guard {
        Some((old, g)) if Arc::ptr_eq(&old, &slot) => g,
        _ => {
            let lock = slot.connection_lock.clone().lock_owned();
            match tokio::time::timeout(TAKEOVER_WAIT, lock).await {
                Ok(g) => g,
                Err(_) => {
                    tracing::warn!(client_id = %client_id, "session still held by another connection; refused");
                    return Err(refuse_because(
                        ReasonCode::ServerBusy,
                        "session still held by another connection, try again",
                    ));
                }
            }
        }
    };

    let (kick_tx, kick_rx) = oneshot::channel();
    {
        let mut ctrl = slot.control.lock();
        ctrl.generation += 1;
        ctrl.kick = Some(kick_tx);
        ctrl.will = connect.will.as_ref().map(|w| Box::new(w.detached()));
        ctrl.will_delay = connect
            .will
            .as_ref()
            .and_then(|w| w.properties.will_delay_interval)
            .unwrap_or(0);
        ctrl.session_expiry = session_expiry;
        ctrl.protocol = Some(connect.protocol);
        ctrl.username = username.clone();
        ctrl.owner_unknown = false;
    }
    slot.set_online(true);
    let persistent = session_expiry != 0 && broker.store().is_enabled();
    slot.set_persistent(persistent);
    slot.state.lock().set_policy(
        origin
            .listener
            .queue_full_policy
            .unwrap_or(limits.queue_full_policy),
    );
    let ticket = if persistent {
        broker.persist_session(&slot, 0)
    } else {
        if session_present {
            // Resumed without expiry: the stored copy has no future.
            broker.store().submit(vec![crate::store::Op::DeleteSession {
                client_id: client_id.clone(),
            }])
        } else {
            crate::store::Ticket::default()
        }
    };

    let (keep_alive, server_keep_alive) =
        negotiate_keep_alive(connect.keep_alive, limits.max_keep_alive);
    let mut properties = Properties::default();
    if v5 {
        properties.assigned_client_identifier = assigned;
        properties.server_keep_alive = server_keep_alive;
        if session_expiry != requested_expiry {
            properties.session_expiry_interval = Some(session_expiry);
        }
        if limits.receive_maximum != u16::MAX {
            properties.receive_maximum = Some(limits.receive_maximum);
        }
        properties.maximum_packet_size = Some(limits.max_packet_size);
        if limits.topic_alias_maximum > 0 {
            properties.topic_alias_maximum = Some(limits.topic_alias_maximum);
        }
        if connect.properties.request_response_information == Some(1) {
            properties.response_information = Some(ByteString::from(format!(
                "{}{}",
                broker.config.response_information_prefix, client_id
            )));
        }
    }
    let keep_alive = if v5 { keep_alive } else { connect.keep_alive };
    Ok(Attached {
        slot,
        guard,
        kick: kick_rx,
        connack: ConnAck {
            // A new session is never "present", whatever clean start said.
            session_present: session_present && !clean_start,
            code: ReasonCode::Success,
            properties,
        },
        keep_alive,
        session_expiry_requested_zero: requested_expiry == 0,
        ticket,
        username,
    })
}

/// A will is a PUBLISH made later: its topic obeys the same limits, and
/// like a PUBLISH it may not write to `$SYS` (the broker's own topics). A
/// topic a PUBLISH would be refused is refused here, at CONNECT, where the
/// client can still be told: v5 0x90 for limits, 0x87 for `$SYS`; 3.1.1
/// has only "not authorized" (rc 5) for both.
fn check_will_topic(
    topic: &str,
    limits: &crate::config::Limits,
    v5: bool,
) -> Result<(), ReasonCode> {
    if topic.starts_with("$SYS/") || topic == "$SYS" {
        return Err(ReasonCode::NotAuthorized);
    }
    if topic.len() > limits.max_topic_length || topic.split('/').count() > limits.max_topic_levels {
        return Err(if v5 {
            ReasonCode::TopicNameInvalid
        } else {
            ReasonCode::NotAuthorized
        });
    }
    Ok(())
}

/// Decides who the client is: the certificate identity where the listener
/// says so, else a user name checked against the password file, else
/// anonymous where the listener allows it. Mosquitto's CONNACK codes: bad
/// credentials 4 / 0x86, not allowed 5 / 0x87; an address over the
/// failed-login limit gets 3 / 0x9F before any hashing.
fn authenticate(
    broker: &Broker,
    connect: &Connect,
    origin: &Origin,
    access: &AccessControl,
) -> Result<Option<ByteString>, ReasonCode> {
    let listener = &origin.listener;
    if listener.identity_is_username() {
        if let Some(id) = &origin.identity {
            return Ok(Some(ByteString::from(id.as_str())));
        }
    }
    match (&connect.username, &access.passwords) {
        (Some(user), Some(passwords)) => {
            let throttle = &broker.login_throttle;
            if throttle.refuses(origin.peer.ip()) {
                tracing::info!(username = %user, "too many failed logins from this address");
                return Err(ReasonCode::ConnectionRateExceeded);
            }
            let password = connect.password.as_deref().unwrap_or(&[]);
            if passwords.verify(user, password) {
                Ok(Some(user.clone()))
            } else {
                throttle.failed(origin.peer.ip());
                tracing::info!(username = %user, "bad user name or password");
                Err(ReasonCode::BadUserNameOrPassword)
            }
        }
        // Without a password file a user name proves nothing, yet where
        // anonymous clients are allowed it is taken as given (as mosquitto
        // does): it selects that user's ACL section and fills %u. The
        // broker warns at start-up when the ACL has such rules.
        (Some(user), None) if listener.allow_anonymous => Ok(Some(user.clone())),
        (None, _) if listener.allow_anonymous => Ok(None),
        _ => Err(ReasonCode::NotAuthorized),
    }
}

/// How long a new connection waits for the previous one to let go of its
/// session. Connections leave within a couple of seconds of being told
/// (their writes are bounded), so this is a backstop, not a wait.
const TAKEOVER_WAIT: Duration = Duration::from_secs(10);

/// Whether the connecting identity may use the session under its client id.
#[derive(Debug, PartialEq, Eq)]
enum OwnerCheck {
    /// No session, or one created by this identity.
    Same,
    /// Another identity's session, and the operator lets it be taken over:
    /// its state is discarded first, never handed over.
    ForeignDiscard,
    /// Another identity's session: refused (v5 0x87, 3.1.1 rc 5).
    ForeignRefused,
}

fn session_owner_check(
    broker: &Broker,
    client_id: &ByteString,
    identity: Option<&ByteString>,
) -> OwnerCheck {
    let Some(existing) = broker.find_session(client_id) else {
        return OwnerCheck::Same;
    };
    let (owner, unknown) = {
        let c = existing.control.lock();
        (c.username.clone(), c.owner_unknown)
    };
    if unknown || owner.as_ref() == identity {
        return OwnerCheck::Same;
    }
    match broker.config.session_takeover {
        SessionTakeover::SameIdentity => OwnerCheck::ForeignRefused,
        SessionTakeover::AnyIdentity => OwnerCheck::ForeignDiscard,
    }
}

/// Closes any connection serving `client_id` (v5: DISCONNECT 0x8E) and
/// waits until it has let go of the session.
async fn take_over(
    broker: &Arc<Broker>,
    client_id: &ByteString,
) -> Option<(Arc<SessionSlot>, OwnedMutexGuard<()>)> {
    let deadline = Instant::now() + TAKEOVER_WAIT;
    loop {
        let old = broker.find_session(client_id)?;
        let kick = old.control.lock().kick.take();
        if let Some(k) = kick {
            let _ = k.send(ReasonCode::SessionTakenOver);
        }
        let lock = old.connection_lock.clone();
        match tokio::time::timeout(Duration::from_millis(100), lock.lock_owned()).await {
            Ok(g) => {
                // The session may have ended while we waited.
                match broker.find_session(client_id) {
                    Some(now) if Arc::ptr_eq(&now, &old) => return Some((old, g)),
                    _ => continue,
                }
            }
            Err(_) if Instant::now() < deadline => continue,
            Err(_) => {
                tracing::warn!(client_id = %client_id, "previous connection did not release the session in time");
                return None;
            }
        }
    }
}

/// The protocol level byte of a CONNECT in `buf`, if it is far enough in,
/// so a CONNECT that fails to decode can still be answered in its version.
pub fn peek_connect_version(buf: &[u8]) -> Option<ProtocolVersion> {
    let (_, n) = crate::codec::decode_varint(buf.get(1..)?).ok()??;
    let body = buf.get(1 + n..)?;
    let name_len = usize::from(u16::from_be_bytes([*body.first()?, *body.get(1)?]));
    match body.get(2 + name_len)? {
        5 => Some(ProtocolVersion::V5),
        _ => Some(ProtocolVersion::V311),
    }
}
