//! Ending a connection so that its last words arrive.
//!
//! When the broker closes a socket that still holds unread input (a client
//! flooding past its receive maximum, sending garbage, or simply still
//! publishing when it is kicked), the kernel answers the close with a TCP
//! reset instead of a FIN. The reset throws away whatever of our last
//! write is not yet delivered, and makes the client's next write or read
//! fail with ECONNRESET: most client libraries then report "connection
//! reset" and never read the DISCONNECT (or refusing CONNACK) that said
//! why. So after the last packet is written the connection half-closes its
//! side (a FIN; over TLS a close_notify, over WebSocket a close frame),
//! then reads and discards what the client still sends until it closes
//! too, for a short bounded time, and only then closes the socket.

use std::future::poll_fn;
use std::mem::MaybeUninit;
use std::pin::Pin;
use std::task::{ready, Poll};
use std::time::{Duration, Instant};

use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt, ReadBuf};

use super::read_chunk::READ_CHUNK;

/// Longest a closing connection keeps reading after its last packet: a
/// client that read the DISCONNECT closes within a round trip.
const LINGER: Duration = Duration::from_secs(1);

/// Most bytes discarded while lingering: a client that keeps flooding gets
/// its reset, but no more than this much of our reading first.
const LINGER_BYTES: usize = 1 << 20;

/// Half-closes `stream`, then discards its input until the client closes,
/// [`LINGER`] or `deadline` passes (whichever is first) or
/// [`LINGER_BYTES`] were read. The caller drops the stream afterwards.
pub async fn linger<S: AsyncRead + AsyncWrite + Unpin>(stream: &mut S, deadline: Instant) {
    let deadline = deadline.min(Instant::now() + LINGER);
    let work = async {
        if stream.shutdown().await.is_err() {
            return;
        }
        let mut discarded = 0;
        while discarded < LINGER_BYTES {
            match discard(stream).await {
                Ok(0) | Err(_) => return,
                Ok(n) => discarded += n,
            }
        }
        tracing::debug!(discarded, "client kept sending after the close");
    };
    let _ = tokio::time::timeout_at(deadline.into(), work).await;
}

/// Reads and drops what has arrived; 0 at end of stream. The buffer is on
/// the stack only while polled, as in `read_chunk`: a lingering
/// connection's future stays small.
async fn discard<S: AsyncRead + Unpin>(stream: &mut S) -> std::io::Result<usize> {
    poll_fn(|cx| {
        let mut chunk = [MaybeUninit::<u8>::uninit(); READ_CHUNK];
        let mut read = ReadBuf::uninit(&mut chunk);
        ready!(Pin::new(&mut *stream).poll_read(cx, &mut read))?;
        Poll::Ready(Ok(read.filled().len()))
    })
    .await
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::AsyncReadExt;

    #[tokio::test]
    async fn half_closes_and_returns_when_the_peer_closes() {
        let (mut client, mut server) = tokio::io::duplex(1024);
        client.write_all(b"unread input").await.expect("write");
        let started = Instant::now();
        let lingering = tokio::spawn(async move {
            linger(&mut server, Instant::now() + Duration::from_secs(10)).await;
        });
        // The server's side reads as closed (its half-close) ...
        let mut buf = Vec::new();
        client.read_to_end(&mut buf).await.expect("read");
        assert!(buf.is_empty());
        // ... and it returns once the client closes too.
        drop(client);
        lingering.await.expect("linger");
        assert!(started.elapsed() < LINGER);
    }

    #[tokio::test]
    async fn gives_up_at_the_deadline_on_a_client_that_never_closes() {
        let (_client, mut server) = tokio::io::duplex(1024);
        let started = Instant::now();
        linger(&mut server, started + Duration::from_millis(50)).await;
        let took = started.elapsed();
        assert!(
            took >= Duration::from_millis(50) && took < LINGER,
            "{took:?}"
        );
    }
}
