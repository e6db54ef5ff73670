//! How protocol messages travel on a connection, server side: on TCP each message is a 4-byte
//! length and a body; on WebSocket each message is one binary WebSocket message holding the
//! body (no length prefix). Both end up as [`Incoming`] bodies and leave as [`Outgoing`]
//! bodies, so the request handling never knows which it serves.

use futures_util::stream::{SplitSink, SplitStream};
use futures_util::{SinkExt, StreamExt};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::sync::mpsc;
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::tungstenite::protocol::frame::CloseFrame;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::{Error as WsError, Message};

use crate::consts::{BODY_TIMEOUT, MAX_WEBSOCKET_MESSAGE_LEN};
use crate::protocol::{check_length, frame_message};

/// A WebSocket stream over TCP (no TLS: it terminates at a reverse proxy).
pub(crate) type WebSocket = WebSocketStream<TcpStream>;

/// The WebSocket settings of both sides: a message, and a frame, of at most
/// [`MAX_WEBSOCKET_MESSAGE_LEN`] bytes (a longer frame is refused from its header).
#[must_use]
pub(crate) fn websocket_config() -> WebSocketConfig {
    WebSocketConfig::default()
        .max_message_size(Some(MAX_WEBSOCKET_MESSAGE_LEN))
        .max_frame_size(Some(MAX_WEBSOCKET_MESSAGE_LEN))
}

/// Why a connection is closed for breaking the framing (the relay first sends
/// `Error { id: 0, code: FramingViolation }`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Violation {
    /// TCP: a length prefix of 0 or over `MAX_MESSAGE_LEN`.
    Length,
    /// TCP: a body that did not arrive within `BODY_TIMEOUT`.
    SlowBody,
    /// WebSocket: an empty binary message.
    Empty,
    /// WebSocket: a text message (close code 1003, unsupported data).
    Text,
    /// WebSocket: a message or frame over [`MAX_WEBSOCKET_MESSAGE_LEN`] (close code 1009).
    TooLarge,
    /// WebSocket: a frame that breaks RFC 6455 (close code 1002).
    Protocol,
}

impl Violation {
    /// The WebSocket close code that says why.
    fn close_code(self) -> CloseCode {
        match self {
            Self::Text => CloseCode::Unsupported,
            Self::TooLarge => CloseCode::Size,
            Self::Length | Self::SlowBody | Self::Empty | Self::Protocol => CloseCode::Protocol,
        }
    }
}

/// What the reading side of a connection produced.
#[derive(Debug)]
pub(crate) enum Incoming {
    /// One message body.
    Body(Vec<u8>),
    /// The framing was broken: answer, then close.
    Violation(Violation),
    /// The peer closed, the connection failed, or it was idle too long.
    Closed,
}

/// What the relay sends on a connection.
#[derive(Debug)]
pub(crate) enum Outgoing {
    /// One message body.
    Body(Vec<u8>),
    /// Close after what was queued before (WebSocket: with this violation's close code).
    Close(Violation),
}

/// The reading side of a connection.
pub(crate) enum Reader {
    /// A TCP stream of length-prefixed messages.
    Tcp(OwnedReadHalf),
    /// A WebSocket connection: one binary message per protocol message.
    WebSocket(SplitStream<WebSocket>),
}

impl Reader {
    /// The next message, waiting at most `idle` for it to start (TCP: and `BODY_TIMEOUT` for
    /// its body; WebSocket: `idle` for the whole message, control frames counting as
    /// activity).
    pub(crate) async fn next(&mut self, idle: std::time::Duration) -> Incoming {
        match self {
            Self::Tcp(read) => {
                let mut prefix = [0u8; 4];
                match tokio::time::timeout(idle, read.read_exact(&mut prefix)).await {
                    Ok(Ok(_)) => {}
                    Ok(Err(_)) | Err(_) => return Incoming::Closed,
                }
                let Some(len) = check_length(prefix) else {
                    return Incoming::Violation(Violation::Length);
                };
                let mut body = vec![0u8; len];
                let body_timeout = std::time::Duration::from_millis(BODY_TIMEOUT.as_millis());
                match tokio::time::timeout(body_timeout, read.read_exact(&mut body)).await {
                    Ok(Ok(_)) => Incoming::Body(body),
                    Ok(Err(_)) => Incoming::Closed,
                    Err(_) => Incoming::Violation(Violation::SlowBody),
                }
            }
            Self::WebSocket(stream) => loop {
                let item = match tokio::time::timeout(idle, stream.next()).await {
                    Ok(Some(item)) => item,
                    Ok(None) | Err(_) => return Incoming::Closed,
                };
                return match item {
                    Ok(Message::Binary(b)) if b.is_empty() => Incoming::Violation(Violation::Empty),
                    Ok(Message::Binary(b)) => Incoming::Body(b.to_vec()),
                    Ok(Message::Text(_)) | Err(WsError::Utf8(_)) => {
                        Incoming::Violation(Violation::Text)
                    }
                    // Pings are answered by the library; pongs and raw frames carry nothing.
                    Ok(Message::Ping(_) | Message::Pong(_) | Message::Frame(_)) => continue,
                    Ok(Message::Close(_)) => Incoming::Closed,
                    Err(WsError::Capacity(_)) => Incoming::Violation(Violation::TooLarge),
                    Err(WsError::Protocol(_)) => Incoming::Violation(Violation::Protocol),
                    Err(_) => Incoming::Closed,
                };
            },
        }
    }
}

/// Writes a TCP connection's outgoing messages until the channel closes or a close is asked.
pub(crate) async fn write_tcp(mut write: OwnedWriteHalf, mut rx: mpsc::Receiver<Outgoing>) {
    while let Some(out) = rx.recv().await {
        match out {
            Outgoing::Body(body) => {
                if write.write_all(&frame_message(&body)).await.is_err() {
                    return;
                }
            }
            Outgoing::Close(_) => break,
        }
    }
    let _ = write.shutdown().await;
}

/// Writes a WebSocket connection's outgoing messages (each one binary message) until the
/// channel closes (then a normal close) or a close is asked (then a close with its code).
pub(crate) async fn write_websocket(
    mut sink: SplitSink<WebSocket, Message>,
    mut rx: mpsc::Receiver<Outgoing>,
) {
    let mut code = CloseCode::Normal;
    while let Some(out) = rx.recv().await {
        match out {
            Outgoing::Body(body) => {
                if sink.send(Message::binary(body)).await.is_err() {
                    return;
                }
            }
            Outgoing::Close(violation) => {
                code = violation.close_code();
                break;
            }
        }
    }
    let close = CloseFrame {
        code,
        reason: "".into(),
    };
    let _ = sink.send(Message::Close(Some(close))).await;
    let _ = sink.close().await;
}
