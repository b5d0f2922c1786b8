//! The client side of the WebSocket upgrade (RFC 6455 §4.1), done here instead of by
//! tokio-tungstenite's `client_async_with_config` for one reason: memory.
//!
//! tungstenite 0.30's client handshake reads the response head into a 4 KiB buffer and hands that
//! very allocation on as the connection's read buffer (its `FrameCodec` only ever reserves more),
//! so every connection kept ~4 KiB, on each of the two connections of an IM session. Here the
//! head is read into a buffer of our own that is dropped once parsed; only the bytes that
//! followed the head (frames the server sent right after its 101) are handed on to the
//! [`WsSocket`], which keeps no read buffer between frames.
//!
//! Everything else is tungstenite's: the request is written by its `generate_request` (same
//! validation, same header order), the response parsed by its parser, and failures are its
//! error values, so callers tell them apart exactly as before. The response checks mirror its
//! `VerifyData::verify_response` (private there), and the head's size limits its `AttackCheck`.

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio_tungstenite::tungstenite::error::{ProtocolError, SubProtocolError};
use tokio_tungstenite::tungstenite::handshake::client::{generate_request, Request, Response};
use tokio_tungstenite::tungstenite::handshake::derive_accept_key;
use tokio_tungstenite::tungstenite::handshake::machine::TryParse;
use tokio_tungstenite::tungstenite::http::StatusCode;
use tokio_tungstenite::tungstenite::Error as WsError;

use crate::ws_socket::{Limits, WsSocket};

/// Room added per read of the response head (the head is usually a few hundred bytes).
const HEAD_CHUNK: usize = 1024;
/// tungstenite's limits on a response head: bytes in all, reads in all, and after
/// `MIN_PACKET_CHECK` reads, at least `MIN_PACKET_SIZE` bytes a read on average (a server
/// trickling its head a byte at a time is refused, not waited on).
const MAX_HEAD_BYTES: usize = 65536;
const MAX_HEAD_READS: usize = 512;
const MIN_PACKET_SIZE: usize = 128;
const MIN_PACKET_CHECK: usize = 64;

/// Send the upgrade `request` on `stream` and read the answer: on a valid 101, the WebSocket
/// (with whatever followed the head already in its read buffer, and `limits` on what it
/// reads) and the response. A refusal is `Error::Http` with the bytes after the head as its
/// body, as tungstenite gives it.
pub(crate) async fn client_upgrade<S>(
    request: Request,
    mut stream: S,
    limits: Limits,
) -> Result<(WsSocket<S>, Response), WsError>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let offered = request
        .headers()
        .get("Sec-WebSocket-Protocol")
        .map(|v| v.to_str().map(subprotocol_list))
        .transpose()?;
    let (wire, key) = generate_request(request)?;
    let accept_key = derive_accept_key(key.as_bytes());
    stream.write_all(&wire).await?;
    stream.flush().await?;

    let (response, tail) = read_head(&mut stream).await?;
    let response = verify(response, &accept_key, offered.as_deref(), tail.as_slice())?;
    let ws = WsSocket::new(stream, &tail, limits);
    Ok((ws, response))
}

fn subprotocol_list(v: &str) -> Vec<String> {
    v.split(',').map(|s| s.trim().to_string()).collect()
}

/// The response head, parsed, and the bytes read after it (exactly sized).
async fn read_head<S: AsyncRead + Unpin>(stream: &mut S) -> Result<(Response, Vec<u8>), WsError> {
    let mut head: Vec<u8> = Vec::new();
    let mut reads = 0;
    loop {
        head.reserve(HEAD_CHUNK);
        let n = stream.read_buf(&mut head).await?;
        if n == 0 {
            return Err(WsError::Protocol(ProtocolError::HandshakeIncomplete));
        }
        reads += 1;
        let trickle = reads > MIN_PACKET_CHECK && reads * MIN_PACKET_SIZE > head.len();
        if head.len() > MAX_HEAD_BYTES || reads > MAX_HEAD_READS || trickle {
            return Err(WsError::AttackAttempt);
        }
        if let Some((size, response)) = Response::try_parse(&head)? {
            return Ok((response, head[size..].to_vec()));
        }
    }
}

/// RFC 6455 §4.1's checks of the server's answer, in tungstenite's order and with its errors.
fn verify(
    mut response: Response,
    accept_key: &str,
    offered: Option<&[String]>,
    tail: &[u8],
) -> Result<Response, WsError> {
    use ProtocolError as P;
    if response.status() != StatusCode::SWITCHING_PROTOCOLS {
        *response.body_mut() = Some(tail.to_vec());
        return Err(WsError::Http(Box::new(response)));
    }
    let headers = response.headers();
    let is = |name: &str, want: &str| {
        headers
            .get(name)
            .and_then(|h| h.to_str().ok())
            .is_some_and(|h| h.eq_ignore_ascii_case(want))
    };
    if !is("Upgrade", "websocket") {
        return Err(WsError::Protocol(P::MissingUpgradeWebSocketHeader));
    }
    if !is("Connection", "Upgrade") {
        return Err(WsError::Protocol(P::MissingConnectionUpgradeHeader));
    }
    if headers
        .get("Sec-WebSocket-Accept")
        .is_none_or(|h| h != accept_key)
    {
        return Err(WsError::Protocol(P::SecWebSocketAcceptKeyMismatch));
    }
    let sub = |e| Err(WsError::Protocol(P::SecWebSocketSubProtocolError(e)));
    match (headers.get("Sec-WebSocket-Protocol"), offered) {
        (None, Some(_)) => return sub(SubProtocolError::NoSubProtocol),
        (Some(_), None) => return sub(SubProtocolError::ServerSentSubProtocolNoneRequested),
        (Some(chosen), Some(offered)) => {
            let chosen = chosen.to_str()?;
            if !offered.iter().any(|o| o == chosen) {
                return sub(SubProtocolError::InvalidSubProtocol);
            }
        }
        (None, None) => {}
    }
    Ok(response)
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::AsyncReadExt;
    use tokio_tungstenite::tungstenite::client::IntoClientRequest;

    /// A server that answers the upgrade with `answer` (its accept key filled in for `{accept}`),
    /// then sends `after`; returns what the client made of it.
    async fn against(
        answer: &str,
        after: &[u8],
        protocols: Option<&str>,
    ) -> Result<(WsSocket<tokio::io::DuplexStream>, Response), WsError> {
        let (client, mut server) = tokio::io::duplex(1 << 16);
        let answer = answer.to_string();
        let after = after.to_vec();
        tokio::spawn(async move {
            let mut req = Vec::new();
            let mut b = [0u8; 1024];
            while !req.ends_with(b"\r\n\r\n") {
                let n = server.read(&mut b).await.unwrap();
                assert!(n > 0, "client closed before its request ended");
                req.extend_from_slice(&b[..n]);
            }
            let req = String::from_utf8(req).unwrap();
            let key = req
                .lines()
                .find_map(|l| l.strip_prefix("Sec-WebSocket-Key: "))
                .unwrap();
            let answer = answer.replace("{accept}", &derive_accept_key(key.as_bytes()));
            // The client may give up half-way (a head over the limit): not the test's failure.
            let _ = server.write_all(answer.as_bytes()).await;
            let _ = server.write_all(&after).await;
            // Keep the pipe open while the client reads.
            let _ = server.read(&mut b).await;
        });
        let mut request = "ws://127.0.0.1/chat".into_client_request().unwrap();
        if let Some(p) = protocols {
            request
                .headers_mut()
                .insert("sec-websocket-protocol", p.parse().unwrap());
        }
        let limits = Limits {
            frame: 1 << 16,
            message: 1 << 16,
        };
        client_upgrade(request, client, limits).await
    }

    const OK: &str = "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: {accept}\r\n";

    #[tokio::test]
    async fn a_frame_sent_with_the_101_is_not_lost() {
        use futures_util::StreamExt;
        // An unmasked text frame "hi" right behind the head, in the same write.
        let (mut ws, response) = against(&format!("{OK}\r\n"), b"\x81\x02hi", None)
            .await
            .unwrap();
        assert_eq!(response.status(), 101);
        let msg = ws.next().await.unwrap().unwrap();
        assert_eq!(msg.into_text().unwrap().as_str(), "hi");
    }

    #[tokio::test]
    async fn a_refusal_carries_the_bytes_after_its_head() {
        let e = against("HTTP/1.1 403 Forbidden\r\n\r\n", b"no token", None)
            .await
            .err()
            .unwrap();
        let WsError::Http(r) = e else { panic!("{e:?}") };
        assert_eq!(r.status(), 403);
        assert_eq!(r.body().as_deref(), Some(&b"no token"[..]));
    }

    #[tokio::test]
    async fn a_wrong_accept_key_or_subprotocol_fails() {
        let bad = OK.replace("{accept}", "AAAA");
        let e = against(&format!("{bad}\r\n"), b"", None)
            .await
            .err()
            .unwrap();
        assert!(matches!(
            e,
            WsError::Protocol(ProtocolError::SecWebSocketAcceptKeyMismatch)
        ));
        let e = against(&format!("{OK}\r\n"), b"", Some("chat, mqtt"))
            .await
            .err()
            .unwrap();
        assert!(matches!(
            e,
            WsError::Protocol(ProtocolError::SecWebSocketSubProtocolError(
                SubProtocolError::NoSubProtocol
            ))
        ));
        let chosen = format!("{OK}Sec-WebSocket-Protocol: mqtt\r\n\r\n");
        assert!(against(&chosen, b"", Some("chat, mqtt")).await.is_ok());
        let e = against(&chosen, b"", Some("chat")).await.err().unwrap();
        assert!(matches!(
            e,
            WsError::Protocol(ProtocolError::SecWebSocketSubProtocolError(
                SubProtocolError::InvalidSubProtocol
            ))
        ));
    }

    #[tokio::test]
    async fn an_endless_head_is_refused() {
        let endless = format!("{OK}X-Pad: {}\r\n", "a".repeat(70_000));
        let e = against(&endless, b"", None).await.err().unwrap();
        assert!(matches!(e, WsError::AttackAttempt), "{e:?}");
    }
}
