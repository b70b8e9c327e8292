//! The CONNECT → CONNACK exchange (3.1, 3.2): client id rules, session
//! takeover and resumption, and the v5 properties that set the limits of
//! the connection.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use bytestring::ByteString;
use tokio::sync::{oneshot, OwnedMutexGuard};

use super::connection::Origin;
use crate::auth::Access;
use crate::broker::{AccessControl, Broker, Claim, SessionSlot};
use crate::codec::{owned_string, ConnAck, Connect, ProtocolVersion, ReasonCode};
use crate::config::SessionTakeover;
use crate::session::machine::{
    check_connect, check_will_topic, connack_properties, keep_alive, owner_check, refusal,
    refusal_because, session_expiry, ClientIdRule, ConnackInputs, OwnerCheck,
};
use crate::store::{Op, Ticket};

/// What the connection keeps from a successful CONNECT.
pub struct Attached {
    pub slot: Arc<SessionSlot>,
    pub guard: OwnedMutexGuard<()>,
    pub kick: oneshot::Receiver<ReasonCode>,
    pub connack: ConnAck,
    pub keep_alive: u16,
    pub session_expiry_requested_zero: bool,
    /// Durable once the session's record is on disk; CONNACK waits for it.
    pub ticket: Ticket,
    /// The authenticated user name (or certificate identity), for the ACL.
    pub username: Option<ByteString>,
}

/// A refusal: the CONNACK to send before closing.
pub struct Refused(pub ConnAck);

fn refuse(code: ReasonCode) -> Refused {
    Refused(refusal(code))
}

fn refuse_because(code: ReasonCode, why: &'static str) -> Refused {
    Refused(refusal_because(code, why))
}

/// A refusal's code and the words for it, before it becomes a CONNACK.
type Why = (ReasonCode, &'static str);

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
/// opens or resumes the session and builds the CONNACK. The rules are
/// `session::machine`'s; this part authenticates, waits and writes.
pub async fn attach(
    broker: &Arc<Broker>,
    connect: &Connect,
    origin: &Origin,
) -> Result<Attached, Refused> {
    let limits = &broker.config.limits;
    if connect.properties.authentication_method.is_some() {
        // No enhanced authentication method is offered (yet).
        return Err(refuse(ReasonCode::BadAuthenticationMethod));
    }
    let access = broker.access();
    // Owned copies: the session keeps them, the CONNECT may be a megabyte.
    let username = authenticate(broker, connect, origin, &access)
        .map_err(refuse)?
        .map(|u| owned_string(&u));
    // Bridge sessions are the broker's own.
    let (client_id, assigned) = match check_connect(connect, sluice_bridges::CLIENT_ID_PREFIX) {
        Ok(ClientIdRule::Given(id)) => (id, false),
        Ok(ClientIdRule::Assign) => (assign_client_id(), true),
        Err(code) => return Err(refuse(code)),
    };
    let expiry = session_expiry(connect, limits.max_session_expiry);
    let because = |(code, why)| refuse_because(code, why);
    check_will(broker, connect, &client_id, username.as_ref(), &access).map_err(because)?;
    let foreign = owner_differs(broker, &client_id, username.as_ref()).map_err(because)?;
    let clean_start = connect.clean_start || foreign;
    let claim = claim(broker, &client_id, username.as_ref(), clean_start).await?;
    if !broker.admits_session(&client_id) {
        tracing::warn!(client_id = %client_id, max_sessions = limits.max_sessions, "session refused: max_sessions reached");
        return Err(refuse(if connect.protocol.is_v5() {
            ReasonCode::QuotaExceeded
        } else {
            ReasonCode::ServerUnavailable
        }));
    }
    if let Claim::Moved(moved) = claim {
        if !clean_start {
            let (record, flows) = *moved;
            broker.adopt_session(&client_id, &record, flows);
        }
    }
    let (slot, guard, session_present) = take_session(broker, &client_id, clean_start).await?;
    let kick = install(&slot, connect, expiry.granted, &username);
    broker.note_will(&client_id, connect.will.as_ref());
    let ticket = keep_on_disk(broker, &slot, origin, session_present, expiry.granted);
    broker.session_attached(&slot);
    let (keep_alive, server_keep_alive) = keep_alive(connect, limits.max_keep_alive);
    let properties = connack_properties(
        connect,
        &ConnackInputs {
            client_id: &client_id,
            assigned,
            server_keep_alive,
            expiry,
            receive_maximum: limits.receive_maximum,
            max_packet_size: limits.max_packet_size,
            topic_alias_maximum: limits.topic_alias_maximum,
            response_prefix: &broker.config.response_information_prefix,
        },
    );
    Ok(Attached {
        slot,
        guard,
        kick,
        connack: ConnAck {
            // A new session is never "present", whatever clean start said.
            session_present: session_present && !clean_start,
            code: ReasonCode::Success,
            properties,
        },
        keep_alive,
        session_expiry_requested_zero: expiry.requested == 0,
        ticket,
        username,
    })
}

/// Claims the client id across the cluster's nodes (granted at once on a
/// single node): refused when another identity's session holds it
/// elsewhere.
async fn claim(
    broker: &Broker,
    client_id: &ByteString,
    username: Option<&ByteString>,
    clean_start: bool,
) -> Result<Claim, Refused> {
    let claim = broker.claim_session(client_id, username, clean_start).await;
    if claim == Claim::Refused {
        tracing::info!(client_id = %client_id, "client id belongs to a session of another identity on another node");
        broker
            .stats
            .takeover_refused
            .fetch_add(1, Ordering::Relaxed);
        return Err(refuse_because(
            ReasonCode::NotAuthorized,
            "client id in use by a session of another identity",
        ));
    }
    Ok(claim)
}

/// The will's topic obeys a PUBLISH's limits, and this identity must be
/// allowed to write it.
fn check_will(
    broker: &Broker,
    connect: &Connect,
    client_id: &ByteString,
    username: Option<&ByteString>,
    access: &AccessControl,
) -> Result<(), Why> {
    let Some(will) = &connect.will else {
        return Ok(());
    };
    let limits = &broker.config.limits;
    let v5 = connect.protocol.is_v5();
    check_will_topic(
        &will.topic,
        limits.max_topic_length,
        limits.max_topic_levels,
        v5,
    )
    .map_err(|code| (code, "will topic not allowed"))?;
    if let Some(acl) = &access.acl {
        if !acl.check_topic(
            client_id,
            username.map(|u| &**u),
            &will.topic,
            Access::Write,
        ) {
            tracing::info!(client_id = %client_id, topic = %will.topic, "will topic not writable for this client");
            return Err((
                ReasonCode::NotAuthorized,
                "will topic not writable for this client",
            ));
        }
    }
    Ok(())
}

/// A session belongs to the identity that created it (checked before the
/// current connection is told to leave): `true` when another identity's
/// session may be taken, its state discarded (a clean start).
fn owner_differs(
    broker: &Broker,
    client_id: &ByteString,
    identity: Option<&ByteString>,
) -> Result<bool, Why> {
    let existing = broker.find_session(client_id).map(|s| {
        let c = s.control.lock();
        (c.username.clone(), c.owner_unknown)
    });
    let any_identity = broker.config.session_takeover == SessionTakeover::AnyIdentity;
    let existing = existing
        .as_ref()
        .map(|(owner, unknown)| (owner.as_ref(), *unknown));
    match owner_check(existing, identity, any_identity) {
        OwnerCheck::Same => Ok(false),
        OwnerCheck::ForeignDiscard => Ok(true),
        OwnerCheck::ForeignRefused => {
            tracing::info!(client_id = %client_id, "client id belongs to a session of another identity");
            broker
                .stats
                .takeover_refused
                .fetch_add(1, Ordering::Relaxed);
            Err((
                ReasonCode::NotAuthorized,
                "client id in use by a session of another identity",
            ))
        }
    }
}

/// Takes over any connection serving `client_id`, opens or resumes the
/// session and holds its connection lock.
async fn take_session(
    broker: &Arc<Broker>,
    client_id: &ByteString,
    clean_start: bool,
) -> Result<(Arc<SessionSlot>, OwnedMutexGuard<()>, bool), Refused> {
    let takeover_guard = take_over(broker, client_id).await;
    let (slot, session_present) = broker.open_session(client_id, clean_start);
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
    Ok((slot, guard, session_present))
}

/// Makes the session this connection's: its will, expiry and owner, and
/// the channel that tells it to leave. The session is online from here.
fn install(
    slot: &SessionSlot,
    connect: &Connect,
    session_expiry: u32,
    username: &Option<ByteString>,
) -> oneshot::Receiver<ReasonCode> {
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
    kick_rx
}

/// Writes (or deletes) the session's stored copy; CONNACK waits for the
/// returned ticket.
fn keep_on_disk(
    broker: &Broker,
    slot: &Arc<SessionSlot>,
    origin: &Origin,
    session_present: bool,
    session_expiry: u32,
) -> Ticket {
    let persistent = session_expiry != 0 && broker.store().is_enabled();
    slot.set_persistent(persistent);
    slot.state.lock().set_policy(
        origin
            .listener
            .queue_full_policy
            .unwrap_or(broker.config.limits.queue_full_policy),
    );
    if persistent {
        broker.persist_session(slot, 0)
    } else if session_present {
        // Resumed without expiry: the stored copy has no future.
        broker.store().submit(vec![Op::DeleteSession {
            client_id: slot.client_id.clone(),
        }])
    } else {
        Ticket::default()
    }
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

/// Closes any connection serving `client_id` (v5: DISCONNECT 0x8E) and
/// waits until it has let go of the session.
async fn take_over(
    broker: &Arc<Broker>,
    client_id: &ByteString,
) -> Option<(Arc<SessionSlot>, OwnedMutexGuard<()>)> {
    let deadline = Instant::now() + TAKEOVER_WAIT;
    loop {
        let old = broker.find_session(client_id)?;
        old.kick(ReasonCode::SessionTakenOver);
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
