//! Following a key-value bucket: its current content, then every change,
//! watched again from the revision reached after an interruption (a NATS
//! reconnection, a new stream leader).

use std::time::Duration;

use async_nats::jetstream::kv;
use futures_util::StreamExt;
use tokio::sync::watch;

/// Hands every entry of `bucket` (`what` names it in logs) to `on_entry`
/// until `stop`.
pub async fn follow(
    bucket: &kv::Store,
    what: &str,
    stop: &mut watch::Receiver<bool>,
    mut on_entry: impl FnMut(kv::Entry),
) {
    let mut next_revision = 0u64;
    loop {
        let watch = if next_revision == 0 {
            bucket.watch_with_history(">").await
        } else {
            bucket.watch_all_from_revision(next_revision).await
        };
        let mut entries = match watch {
            Ok(w) => w,
            Err(e) => {
                tracing::warn!(bucket = what, error = %e, "cluster: cannot watch a bucket, retrying");
                tokio::select! {
                    _ = tokio::time::sleep(Duration::from_secs(1)) => continue,
                    _ = stop.changed() => return,
                }
            }
        };
        loop {
            let entry = tokio::select! {
                e = entries.next() => e,
                _ = stop.changed() => return,
            };
            match entry {
                Some(Ok(entry)) => {
                    next_revision = entry.revision + 1;
                    on_entry(entry);
                }
                Some(Err(e)) => {
                    tracing::warn!(bucket = what, error = %e, "cluster: bucket watch interrupted");
                    break;
                }
                None => break,
            }
        }
    }
}
