//! The broker's implementations of the session core's two outward
//! signals: releasing a message's copy on disk, and telling a publisher
//! that a bridge's sink has its message. The session defines the traits so
//! it needs neither the store's I/O nor an async runtime.

use std::sync::Arc;

use tokio::sync::oneshot;

use crate::session::{MessageRelease, SinkAck};
use crate::store::{Op, Store};

/// Deletes a message from the store when its last reference in memory
/// goes. One per broker, shared by every stored message.
#[derive(Debug)]
pub struct StoreRelease(pub Store);

impl MessageRelease for StoreRelease {
    fn release(&self, id: u64) {
        self.0.submit_release(vec![Op::DeleteMessage { id }]);
    }
}

/// A [`SinkAck`] over a tokio oneshot: the publisher's connection waits on
/// the receiver; a drop without `fire` closes the channel, which the
/// connection reads as "not acknowledged".
#[derive(Debug)]
pub struct OneshotSinkAck(parking_lot::Mutex<Option<oneshot::Sender<()>>>);

impl OneshotSinkAck {
    /// A signal and the receiver the publisher's connection waits on.
    pub fn pair() -> (Arc<dyn SinkAck>, oneshot::Receiver<()>) {
        let (tx, rx) = oneshot::channel();
        (
            Arc::new(OneshotSinkAck(parking_lot::Mutex::new(Some(tx)))),
            rx,
        )
    }
}

impl SinkAck for OneshotSinkAck {
    fn fire(&self) {
        if let Some(tx) = self.0.lock().take() {
            let _ = tx.send(());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fire_once_reaches_the_waiter() {
        let (signal, mut wait) = OneshotSinkAck::pair();
        signal.fire();
        signal.fire();
        assert_eq!(wait.try_recv(), Ok(()));
    }

    #[test]
    fn drop_without_fire_reads_as_not_acknowledged() {
        let (signal, mut wait) = OneshotSinkAck::pair();
        drop(signal);
        assert_eq!(wait.try_recv(), Err(oneshot::error::TryRecvError::Closed));
    }
}
