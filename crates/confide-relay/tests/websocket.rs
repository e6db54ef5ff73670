//! The relay's WebSocket listener (`--listen-ws`), as a separate process on 127.0.0.1: the same
//! protocol, one binary WebSocket message per protocol message, shared with TCP (a frame sent
//! on one is delivered on the other); text messages, empty and oversized messages and
//! malformed bodies are refused and the relay keeps serving.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use crate::common;

use common::*;
use confide_relay::client::{RelayAddress, RelayConnection};
use confide_relay::consts::MAX_WEBSOCKET_MESSAGE_LEN;
use confide_relay::protocol::{ErrorCode, Request, RequestBody, ServerMessage};
use futures_util::{SinkExt, StreamExt};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;

fn ws(relay: &RelayProcess) -> RelayAddress {
    RelayAddress::WebSocket(relay.ws.unwrap())
}

type RawSocket = tokio_tungstenite::WebSocketStream<tokio::net::TcpStream>;

/// A WebSocket connection that speaks no protocol of ours: for what our client never sends.
async fn raw_socket(relay: &RelayProcess) -> RawSocket {
    let addr = relay.ws.unwrap();
    let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    let (socket, response) = tokio_tungstenite::client_async(format!("ws://{addr}/"), tcp)
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 101, "switching protocols");
    socket
}

/// The next message from the relay as a protocol message (skipping control frames).
async fn next_protocol_message(socket: &mut RawSocket) -> ServerMessage {
    loop {
        match socket.next().await.unwrap().unwrap() {
            Message::Binary(b) => return ServerMessage::from_bytes(&b).unwrap(),
            Message::Ping(_) | Message::Pong(_) => {}
            other => panic!("expected a binary message, got {other:?}"),
        }
    }
}

/// The close code the relay ends with (skipping anything before it).
async fn close_code(socket: &mut RawSocket) -> CloseCode {
    loop {
        match socket.next().await {
            Some(Ok(Message::Close(Some(frame)))) => return frame.code,
            Some(Ok(Message::Close(None))) => panic!("closed without a code"),
            Some(Ok(_)) => {}
            Some(Err(e)) => panic!("connection failed before a close frame: {e}"),
            None => panic!("stream ended before a close frame"),
        }
    }
}

#[tokio::test]
async fn requests_and_deliveries_round_trip_over_websocket_and_tcp_alike() {
    within(async {
        let dir = TempDir::new("ws-roundtrip");
        let relay = RelayProcess::start(dir.path(), &["--listen-ws", "127.0.0.1:0"]);
        let mailbox = address("ws owner");
        let k = key(21);
        // The owner on WebSocket; one sender on WebSocket, one on TCP.
        let mut o = owner(ws(&relay), &mailbox, &k).await;
        o.ping().await.unwrap();
        let mut over_ws = RelayConnection::connect(ws(&relay)).await.unwrap();
        let mut over_tcp = RelayConnection::connect(relay.addr).await.unwrap();
        let a = frame(frame_id(1), b"sent over websocket");
        let b = frame(frame_id(2), b"sent over tcp");
        assert_eq!(over_ws.send(&mailbox, None, &a).await.unwrap(), frame_id(1));
        assert_eq!(
            over_tcp.send(&mailbox, None, &b).await.unwrap(),
            frame_id(2)
        );
        assert_eq!(delivery(&mut o).await, a, "pushed over websocket");
        assert_eq!(delivery(&mut o).await, b);
        o.confirm(&[frame_id(1), frame_id(2)]).await.unwrap();
        assert_eq!(o.bundle_count().await.unwrap(), (0, false));
        drop(o);
        // The owner again, now over TCP: nothing is left but a probe sent over WebSocket.
        let mut o = RelayConnection::connect(relay.addr).await.unwrap();
        o.authenticate(&mailbox, &k).await.unwrap();
        assert_only_probe_waits(ws(&relay), &mailbox, &mut o, 9).await;
    })
    .await;
}

#[tokio::test]
async fn malformed_websocket_messages_are_refused_and_the_relay_keeps_serving() {
    within(async {
        let dir = TempDir::new("ws-barrage");
        let relay = RelayProcess::start(dir.path(), &["--listen-ws", "127.0.0.1:0"]);
        let mailbox = address("ws barrage target");
        let k = key(22);
        let mut o = owner(relay.addr, &mailbox, &k).await;

        // Every truncation of valid requests, a trailing byte, another version: each one
        // binary message, each answered with an error on the same connection.
        let good = frame(frame_id(1), b"payload");
        let mut c = RelayConnection::connect(ws(&relay)).await.unwrap();
        let mut refusals = 0;
        for body in [
            RequestBody::Send {
                to: mailbox.clone(),
                token: None,
                frame: good.clone(),
            },
            RequestBody::Confirm {
                ids: vec![frame_id(1)],
            },
            RequestBody::FetchBundle {
                address: mailbox.clone(),
            },
        ] {
            let bytes = Request { id: 5, body }.to_bytes().unwrap();
            let mut variants: Vec<Vec<u8>> =
                (1..bytes.len()).map(|n| bytes[..n].to_vec()).collect();
            variants.push([bytes.as_slice(), &[0]].concat());
            let mut other_version = bytes.clone();
            other_version[0] = 9;
            variants.push(other_version);
            for v in variants {
                c.write_raw(&v).await.unwrap();
                match c.next_reply().await.unwrap() {
                    ServerMessage::Error { code, .. } => {
                        assert!(
                            matches!(code, ErrorCode::Malformed | ErrorCode::UnsupportedVersion),
                            "{code}"
                        );
                        refusals += 1;
                    }
                    other => panic!("malformed request answered {other:?}"),
                }
            }
        }
        c.ping().await.unwrap();
        assert!(refusals > 100, "{refusals}");

        // A text message: a framing violation, then close code 1003 (unsupported data).
        let mut s = raw_socket(&relay).await;
        assert!(matches!(
            next_protocol_message(&mut s).await,
            ServerMessage::Hello { .. }
        ));
        s.send(Message::text("01 0a 00 00 00 01")).await.unwrap();
        assert_eq!(
            next_protocol_message(&mut s).await,
            ServerMessage::Error {
                id: 0,
                code: ErrorCode::FramingViolation
            }
        );
        assert_eq!(close_code(&mut s).await, CloseCode::Unsupported);

        // An empty binary message: a framing violation, close code 1002 (protocol error).
        let mut s = raw_socket(&relay).await;
        let _hello = next_protocol_message(&mut s).await;
        s.send(Message::binary(Vec::new())).await.unwrap();
        assert_eq!(
            next_protocol_message(&mut s).await,
            ServerMessage::Error {
                id: 0,
                code: ErrorCode::FramingViolation
            }
        );
        assert_eq!(close_code(&mut s).await, CloseCode::Protocol);

        // One byte over the limit: refused from the frame header, close code 1009. The relay
        // answers and closes as soon as it has read the header, so the client may still be
        // writing the body when the connection goes: a broken pipe or reset on that write is
        // the same refusal, seen from the writer's side (it made this test flaky).
        let mut s = raw_socket(&relay).await;
        let _hello = next_protocol_message(&mut s).await;
        match s
            .send(Message::binary(vec![1u8; MAX_WEBSOCKET_MESSAGE_LEN + 1]))
            .await
        {
            Ok(()) => {
                assert_eq!(
                    next_protocol_message(&mut s).await,
                    ServerMessage::Error {
                        id: 0,
                        code: ErrorCode::FramingViolation
                    }
                );
                assert_eq!(close_code(&mut s).await, CloseCode::Size);
            }
            Err(tokio_tungstenite::tungstenite::Error::Io(e)) => assert!(
                matches!(
                    e.kind(),
                    std::io::ErrorKind::BrokenPipe | std::io::ErrorKind::ConnectionReset
                ),
                "{e}"
            ),
            Err(e) => panic!("writing the oversized message: {e}"),
        }
        // At the limit is a message like any other (here: not a valid request).
        let mut s = raw_socket(&relay).await;
        let _hello = next_protocol_message(&mut s).await;
        s.send(Message::binary(vec![1u8; MAX_WEBSOCKET_MESSAGE_LEN]))
            .await
            .unwrap();
        assert!(matches!(
            next_protocol_message(&mut s).await,
            ServerMessage::Error {
                code: ErrorCode::Malformed,
                ..
            }
        ));

        // Nothing was stored, and the relay still serves both listeners.
        assert_only_probe_waits(ws(&relay), &mailbox, &mut o, 500).await;
        assert_only_probe_waits(relay.addr, &mailbox, &mut o, 501).await;
    })
    .await;
}
