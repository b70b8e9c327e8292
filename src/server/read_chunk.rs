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

/// Waits for bytes, appends up to [`READ_CHUNK`] of them to `buf` and
/// returns how many (0 at end of stream).
pub async fn read_chunk<R: AsyncRead + Unpin>(
    reader: &mut R,
    buf: &mut BytesMut,
) -> std::io::Result<usize> {
    poll_fn(|cx| {
        let mut chunk = [MaybeUninit::<u8>::uninit(); READ_CHUNK];
        let mut read = ReadBuf::uninit(&mut chunk);
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
}
