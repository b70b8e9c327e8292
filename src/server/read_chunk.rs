//! Reading without a buffer of one's own while idle.
//!
//! Most connections of an IoT fleet are idle most of the time. A read
//! buffer kept for the next packet costs each of them about a kilobyte
//! (more after a burst); mosquitto's whole connection is 736 bytes. So the
//! connection reads into a chunk on the thread's stack, which exists only
//! while the read is polled, and appends what arrived to its (possibly
//! empty) buffer. The buffer is let go whenever it has been consumed. The
//! price is one copy of incoming bytes, small next to the system call.

use std::future::poll_fn;
use std::mem::MaybeUninit;
use std::pin::Pin;
use std::task::{ready, Poll};

use bytes::BytesMut;
use tokio::io::{AsyncRead, ReadBuf};

/// Most bytes taken from the stream per read.
pub const READ_CHUNK: usize = 16 * 1024;

/// Bytes taken per read when no packet is partly read. Small on purpose:
/// a read is one wake-up's worth of work, and 16 KB of small publishes per
/// wake-up let 50 publishers starve their subscriber (open-loop fan-in
/// fell from ~1M to 131k messages/s delivered, the rest dropped).
pub const FIRST_READ: usize = 1024;

/// How much to read when `pending` bytes of an unfinished packet are
/// buffered: doubling, so a large packet takes few reads, while a stream
/// of small ones is read a kilobyte at a time.
fn read_limit(pending: usize) -> usize {
    pending.saturating_mul(2).clamp(FIRST_READ, READ_CHUNK)
}

/// Waits for bytes, appends up to [`READ_CHUNK`] of them to `buf` and
/// returns how many (0 at end of stream).
pub async fn read_chunk<R: AsyncRead + Unpin>(
    reader: &mut R,
    buf: &mut BytesMut,
) -> std::io::Result<usize> {
    poll_fn(|cx| {
        let mut chunk = [MaybeUninit::<u8>::uninit(); READ_CHUNK];
        let limit = read_limit(buf.len());
        let mut read = ReadBuf::uninit(&mut chunk[..limit]);
        ready!(Pin::new(&mut *reader).poll_read(cx, &mut read))?;
        buf.extend_from_slice(read.filled());
        Poll::Ready(Ok(read.filled().len()))
    })
    .await
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::AsyncWriteExt;

    #[tokio::test]
    async fn appends_to_an_empty_buffer_and_reports_end_of_stream() {
        let (mut client, mut server) = tokio::io::duplex(64 * 1024);
        let data: Vec<u8> = (0..40_000u32).map(|i| i as u8).collect();
        client.write_all(&data).await.expect("write");
        drop(client);
        let mut buf = BytesMut::new();
        loop {
            let n = read_chunk(&mut server, &mut buf).await.expect("read");
            assert!(n <= READ_CHUNK);
            if n == 0 {
                break;
            }
        }
        assert_eq!(&buf[..], &data[..]);
    }

    #[test]
    fn reads_grow_with_an_unfinished_packet_and_stay_small_between_packets() {
        assert_eq!(read_limit(0), FIRST_READ);
        assert_eq!(read_limit(100), FIRST_READ);
        assert_eq!(read_limit(3000), 6000);
        assert_eq!(read_limit(1 << 20), READ_CHUNK);
    }
}
