//! Cluster mode on NATS JetStream (issue 23), being built piece by piece:
//! so far the mapping between MQTT topics and NATS subjects. Routing,
//! sessions and retained messages across nodes come next; until then the
//! broker refuses a `[cluster]` section.
//!
//! The cluster is an edge of the broker, a sibling of `server` and
//! `bridge` (docs/ARCHITECTURE.md): it will publish into the local broker
//! what other nodes send and carry out what local clients publish.

mod subject;

pub use subject::{SubjectError, SubjectSpace};
