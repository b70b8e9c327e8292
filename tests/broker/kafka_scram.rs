//! The SCRAM-SHA-256 check tansu 0.6.0 cannot make, made by the TLS front
//! (`kafka_fronts`) on each connection before it forwards the rest as is.
//!
//! tansu's in-memory storage keeps no SCRAM credentials, so tansu answers
//! every login with a made-up salt and, at the end, `e=unknown-user`; yet it
//! counts the connection as logged in. The front passes the exchange
//! through, checks the client's proof against the one user and password it
//! knows (RFC 5802, with tansu's salt and iteration count), and replaces
//! tansu's last word with the server's signature (`v=`) or
//! `e=invalid-proof`. librdkafka's SCRAM client is thus checked for real:
//! the right password gets through, a wrong one is refused.

use std::io::{Error, ErrorKind, Result};
use std::num::NonZeroU32;

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use ring::{digest, hmac, pbkdf2};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

/// Kafka's SaslAuthenticate request.
const SASL_AUTHENTICATE: i16 = 36;

/// The one user the front lets in.
#[derive(Debug, Clone)]
pub struct ScramUser {
    pub name: String,
    pub password: String,
}

impl ScramUser {
    /// Relays requests and responses one by one until the client's SCRAM
    /// exchange ended, rewriting its last response (see the module docs).
    pub async fn check<C, T>(&self, client: &mut C, tansu: &mut T) -> Result<()>
    where
        C: AsyncRead + AsyncWrite + Unpin,
        T: AsyncRead + AsyncWrite + Unpin,
    {
        let mut first: Option<(Vec<u8>, Vec<u8>)> = None;
        loop {
            let request = read_frame(client).await?;
            write_frame(tansu, &request).await?;
            let response = read_frame(tansu).await?;
            if request.get(..2) != Some(&SASL_AUTHENTICATE.to_be_bytes()[..]) {
                write_frame(client, &response).await?;
                continue;
            }
            let message = request_auth_bytes(&request)?;
            let Some((client_first, server_first)) = &first else {
                first = Some((message.to_vec(), response_auth_bytes(&response)?.0.to_vec()));
                write_frame(client, &response).await?;
                continue;
            };
            let verdict = self.server_final(client_first, server_first, message)?;
            let (_, at, len) = response_auth_bytes(&response)?;
            let mut rewritten = response[..at].to_vec();
            rewritten.extend_from_slice(&(verdict.len() as i32).to_be_bytes());
            rewritten.extend_from_slice(&verdict);
            rewritten.extend_from_slice(&response[at + 4 + len..]);
            return write_frame(client, &rewritten).await;
        }
    }

    /// `v=<server signature>` when the client's proof is right, else the
    /// error.
    fn server_final(
        &self,
        client_first: &[u8],
        server_first: &[u8],
        last: &[u8],
    ) -> Result<Vec<u8>> {
        let bare = client_first
            .strip_prefix(b"n,,")
            .ok_or_else(|| invalid("client-first without the n,, header"))?;
        if field(bare, b"n=") != Some(self.name.as_bytes()) {
            return Ok(b"e=unknown-user".to_vec());
        }
        let salt = STANDARD
            .decode(field(server_first, b"s=").ok_or_else(|| invalid("no salt"))?)
            .map_err(|_| invalid("salt"))?;
        let iterations: u32 = std::str::from_utf8(field(server_first, b"i=").unwrap_or_default())
            .ok()
            .and_then(|i| i.parse().ok())
            .ok_or_else(|| invalid("iterations"))?;
        let proof_at = find(last, b",p=").ok_or_else(|| invalid("no proof"))?;
        let proof = STANDARD
            .decode(&last[proof_at + 3..])
            .map_err(|_| invalid("proof"))?;
        let without_proof = &last[..proof_at];
        let auth_message = [bare, server_first, without_proof].join(&b","[..]);

        let mut salted = [0u8; 32];
        pbkdf2::derive(
            pbkdf2::PBKDF2_HMAC_SHA256,
            NonZeroU32::new(iterations).ok_or_else(|| invalid("zero iterations"))?,
            &salt,
            self.password.as_bytes(),
            &mut salted,
        );
        let salted = hmac::Key::new(hmac::HMAC_SHA256, &salted);
        let client_key = hmac::sign(&salted, b"Client Key");
        let stored_key = digest::digest(&digest::SHA256, client_key.as_ref());
        let signature = hmac::sign(
            &hmac::Key::new(hmac::HMAC_SHA256, stored_key.as_ref()),
            &auth_message,
        );
        let expected: Vec<u8> = client_key
            .as_ref()
            .iter()
            .zip(signature.as_ref())
            .map(|(k, s)| k ^ s)
            .collect();
        if proof != expected {
            return Ok(b"e=invalid-proof".to_vec());
        }
        let server_key = hmac::sign(&salted, b"Server Key");
        let server_signature = hmac::sign(
            &hmac::Key::new(hmac::HMAC_SHA256, server_key.as_ref()),
            &auth_message,
        );
        Ok(format!("v={}", STANDARD.encode(server_signature.as_ref())).into_bytes())
    }
}

/// The value of `name` (`r=`, `s=`...) in a SCRAM message.
fn field<'a>(message: &'a [u8], name: &[u8]) -> Option<&'a [u8]> {
    message
        .split(|b| *b == b',')
        .find_map(|part| part.strip_prefix(name))
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

/// A SaslAuthenticate v0/v1 request's auth_bytes, after header v1 (api
/// key, version, correlation id, client id).
fn request_auth_bytes(request: &[u8]) -> Result<&[u8]> {
    let client_id_len = i16_at(request, 8)?;
    let at = 10 + usize::try_from(client_id_len).unwrap_or(0);
    let len = usize::try_from(i32_at(request, at)?).map_err(|_| invalid("length"))?;
    slice(request, at + 4, len)
}

/// A SaslAuthenticate v0/v1 response's auth_bytes (after the correlation
/// id, the error code and the nullable error message), with where its
/// length starts and its length.
fn response_auth_bytes(response: &[u8]) -> Result<(&[u8], usize, usize)> {
    let message_len = i16_at(response, 6)?;
    let at = 8 + usize::try_from(message_len).unwrap_or(0);
    let len = usize::try_from(i32_at(response, at)?).map_err(|_| invalid("length"))?;
    Ok((slice(response, at + 4, len)?, at, len))
}

fn slice(bytes: &[u8], at: usize, len: usize) -> Result<&[u8]> {
    bytes
        .get(at..at + len)
        .ok_or_else(|| invalid("short frame"))
}

fn i16_at(bytes: &[u8], at: usize) -> Result<i16> {
    let raw = slice(bytes, at, 2)?;
    Ok(i16::from_be_bytes([raw[0], raw[1]]))
}

fn i32_at(bytes: &[u8], at: usize) -> Result<i32> {
    let raw = slice(bytes, at, 4)?;
    Ok(i32::from_be_bytes([raw[0], raw[1], raw[2], raw[3]]))
}

async fn read_frame<R: AsyncRead + Unpin>(from: &mut R) -> Result<Vec<u8>> {
    let len = usize::try_from(from.read_i32().await?).map_err(|_| invalid("length"))?;
    let mut frame = vec![0; len];
    from.read_exact(&mut frame).await?;
    Ok(frame)
}

async fn write_frame<W: AsyncWrite + Unpin>(to: &mut W, frame: &[u8]) -> Result<()> {
    to.write_all(&(frame.len() as i32).to_be_bytes()).await?;
    to.write_all(frame).await?;
    to.flush().await
}

fn invalid(what: &str) -> Error {
    Error::new(ErrorKind::InvalidData, what.to_owned())
}
