//! What the process does when the store fails (see `store::committer`):
//! the broker starts a graceful shutdown at once, and if that has not
//! finished after [`EXIT_AFTER`] (a connection waiting for an
//! acknowledgement that will never come, a hung disk), the process exits
//! anyway. Either way the exit status is 1, so a supervisor restarts it.

use std::time::Duration;

use crate::store::Store;

/// The longest the process lives after a storage failure.
pub const EXIT_AFTER: Duration = Duration::from_secs(10);

/// Exit status after a storage failure.
pub const EXIT_STATUS: i32 = 1;

/// Waits for a storage failure, then arms the exit deadline; returns the
/// cause so the caller can start the graceful shutdown.
pub async fn watch(store: Store) -> std::sync::Arc<str> {
    let cause = store.failed().await;
    // A thread, not a task: the deadline must hold even if the runtime is
    // stuck.
    let armed = std::thread::Builder::new()
        .name("sluice-exit".into())
        .spawn(|| {
            std::thread::sleep(EXIT_AFTER);
            tracing::error!(
                after_secs = EXIT_AFTER.as_secs(),
                "graceful shutdown after the storage failure did not finish; exiting"
            );
            std::process::exit(EXIT_STATUS);
        });
    if armed.is_err() {
        std::process::exit(EXIT_STATUS);
    }
    cause
}
