//! The seam for who holds a client id across brokers: in cluster mode a
//! CONNECT claims its client id cluster-wide before the session is taken
//! here, so a session belongs to one identity and one node at a time (the
//! single-node ownership rules, across nodes). A single node has no
//! directory: every claim is granted.

use std::future::Future;
use std::pin::Pin;

use bytestring::ByteString;

use crate::session::Message;

/// What a claim found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Claim {
    /// The client id is this node's now (any holder elsewhere is told to
    /// let go).
    Granted,
    /// Another identity's session holds the client id on another node,
    /// and the takeover policy keeps it.
    Refused,
}

/// Where client ids are claimed.
pub trait SessionDirectory: Send + Sync {
    /// Claims `client_id` for `identity` (the authenticated user name).
    /// Bounded in time: an unreachable directory grants.
    fn claim<'a>(
        &'a self,
        client_id: &'a ByteString,
        identity: Option<&'a ByteString>,
    ) -> Pin<Box<dyn Future<Output = Claim> + Send + 'a>>;

    /// The will this node holds for `client_id` now (with its delay in
    /// seconds), or none: kept where other nodes find it, so it is
    /// published if this node dies. Never blocks.
    fn will_changed(&self, _client_id: &ByteString, _will: Option<(Message, u32)>) {}
}
