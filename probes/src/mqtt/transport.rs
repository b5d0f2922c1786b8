//! The byte pipe an MQTT connection runs over: TCP, TLS over TCP, or binary WebSocket frames
//! (`Sec-WebSocket-Protocol: mqtt`, over TCP or TLS). The connection task reads into one buffer
//! and writes whole packets, whatever the pipe.

use bytes::{Bytes, BytesMut};
use futures_util::{SinkExt, StreamExt};
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt};
use tokio_tungstenite::tungstenite::{Error as WsError, Message};

use crate::ws_socket::WsSocket;

/// Any byte stream: TCP or TLS over TCP.
pub trait Io: AsyncRead + AsyncWrite + Unpin + Send + 'static {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send + 'static> Io for T {}

pub enum Transport {
    Stream(Box<dyn Io>),
    Ws(Box<WsSocket<Box<dyn Io>>>),
}

impl Transport {
    /// Append what arrives to `buf`; `Ok(0)` when the peer ended the connection. Cancel-safe
    /// (the connection task races it against its commands and timers).
    pub async fn read(&mut self, buf: &mut BytesMut) -> Result<usize, String> {
        match self {
            // No room is kept while waiting: an idle connection holds no read buffer.
            Transport::Stream(s) => crate::lazy_read::read_into(s, buf)
                .await
                .map_err(|e| io_words(&e)),
            Transport::Ws(ws) => loop {
                match ws.next().await {
                    Some(Ok(Message::Binary(b))) => {
                        buf.extend_from_slice(&b);
                        // An empty binary frame carries no MQTT bytes: keep reading.
                        if !b.is_empty() {
                            return Ok(b.len());
                        }
                    }
                    // The socket has queued the pong; the next write or read flushes it.
                    Some(Ok(Message::Ping(_) | Message::Pong(_) | Message::Frame(_))) => {}
                    Some(Ok(Message::Text(_))) => {
                        return Err(
                            "the broker sent a text WebSocket frame (MQTT uses binary frames)"
                                .into(),
                        )
                    }
                    Some(Ok(Message::Close(_))) | None => return Ok(0),
                    Some(Err(e)) => return Err(ws_words(&e)),
                }
            },
        }
    }

    /// Write one whole packet (one binary frame over WebSocket) and flush it.
    pub async fn write(&mut self, bytes: Bytes) -> Result<(), String> {
        match self {
            Transport::Stream(s) => {
                s.write_all(&bytes).await.map_err(|e| io_words(&e))?;
                s.flush().await.map_err(|e| io_words(&e))
            }
            Transport::Ws(ws) => ws
                .send(Message::Binary(bytes))
                .await
                .map_err(|e| ws_words(&e)),
        }
    }

    /// End the connection politely (TLS close_notify, WebSocket close), without waiting long.
    pub async fn shutdown(&mut self) {
        let _ = tokio::time::timeout(std::time::Duration::from_secs(1), async {
            match self {
                Transport::Stream(s) => {
                    let _ = s.shutdown().await;
                }
                Transport::Ws(ws) => {
                    // The `Sink`'s close: a close frame without a code, the broker's answer not awaited.
                    let _ = SinkExt::close(&mut **ws).await;
                }
            }
        })
        .await;
    }
}

fn io_words(e: &std::io::Error) -> String {
    match e.kind() {
        std::io::ErrorKind::ConnectionReset => "the connection was reset by the broker".into(),
        std::io::ErrorKind::UnexpectedEof => "the broker dropped the connection".into(),
        std::io::ErrorKind::BrokenPipe => "the broker closed the connection (broken pipe)".into(),
        _ => format!("I/O error: {e}"),
    }
}

fn ws_words(e: &WsError) -> String {
    match e {
        WsError::Io(io) => io_words(io),
        WsError::Capacity(c) => format!("WebSocket frame too large: {c}"),
        WsError::Protocol(p) => format!("the broker broke the WebSocket protocol: {p}"),
        WsError::ConnectionClosed | WsError::AlreadyClosed => "the connection is closed".into(),
        other => other.to_string(),
    }
}
