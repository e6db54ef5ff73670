//! Per-source-address connection limits of a relay process on 127.0.0.1
//! (`--max-connections-per-ip`, `--new-connections-per-ip-per-minute`): over either limit a
//! TCP connection gets `Error { id: 0, code: TooManyConnections }` instead of `Hello` and is
//! closed, a WebSocket connection gets HTTP 429 instead of the upgrade; other source
//! addresses are still served.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use crate::common;

use std::net::SocketAddr;
use std::time::Duration;

use common::*;
use confide_relay::client::{RelayAddress, RelayConnection};
use confide_relay::protocol::{ErrorCode, ServerMessage};
use tokio::io::AsyncReadExt;

/// The first relay message on a TCP connection from `source` (bound to that local address).
async fn first_message_from(source: &str, relay: SocketAddr) -> ServerMessage {
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.bind(format!("{source}:0").parse().unwrap()).unwrap();
    let mut stream = socket.connect(relay).await.unwrap();
    let mut prefix = [0u8; 4];
    stream.read_exact(&mut prefix).await.unwrap();
    let mut body = vec![0u8; u32::from_be_bytes(prefix) as usize];
    stream.read_exact(&mut body).await.unwrap();
    ServerMessage::from_bytes(&body).unwrap()
}

/// Retries `connect` until it is admitted (the relay frees a slot when it notices a close).
async fn admitted(relay: impl Into<RelayAddress>) -> RelayConnection {
    let relay = relay.into();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    loop {
        match RelayConnection::connect(relay).await {
            Ok(c) => return c,
            Err(e) => {
                assert_eq!(
                    refused::<()>(Err(e)),
                    ErrorCode::TooManyConnections,
                    "only the open-connection limit refuses here"
                );
                assert!(tokio::time::Instant::now() < deadline, "slot never freed");
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
    }
}

#[tokio::test]
async fn one_source_is_held_to_its_open_and_new_connection_limits_and_others_are_served() {
    tokio::time::timeout(TEST_DEADLINE, async {
        let dir = TempDir::new("per-ip");
        let relay = RelayProcess::start(
            dir.path(),
            &[
                "--listen-ws",
                "127.0.0.1:0",
                "--max-connections-per-ip",
                "3",
                "--new-connections-per-ip-per-minute",
                "5",
            ],
        );
        let ws = RelayAddress::WebSocket(relay.ws.unwrap());
        // Three open connections (new connections 1-3), over both listeners.
        let mut c1 = RelayConnection::connect(relay.addr).await.unwrap();
        let c2 = RelayConnection::connect(ws).await.unwrap();
        let c3 = RelayConnection::connect(relay.addr).await.unwrap();
        c1.ping().await.unwrap();
        // A fourth is refused on either listener, with a clear code.
        assert_eq!(
            refused(RelayConnection::connect(relay.addr).await),
            ErrorCode::TooManyConnections
        );
        assert_eq!(
            refused(RelayConnection::connect(ws).await),
            ErrorCode::TooManyConnections,
            "HTTP 429 instead of the upgrade"
        );
        // Another source address is not affected.
        assert!(matches!(
            first_message_from("127.0.0.2", relay.addr).await,
            ServerMessage::Hello { .. }
        ));
        // Closing one frees a slot (new connections 4 and 5).
        drop(c1);
        let mut c4 = admitted(relay.addr).await;
        c4.ping().await.unwrap();
        drop(c2);
        let mut c5 = admitted(ws).await;
        c5.ping().await.unwrap();
        // All closed, but five new connections this minute: the sixth is refused for the
        // rate, with nothing open from this source.
        drop((c3, c4, c5));
        tokio::time::sleep(Duration::from_millis(300)).await;
        assert_eq!(
            refused(RelayConnection::connect(relay.addr).await),
            ErrorCode::TooManyConnections
        );
        assert_eq!(
            first_message_from("127.0.0.1", relay.addr).await,
            ServerMessage::Error {
                id: 0,
                code: ErrorCode::TooManyConnections
            },
            "refused instead of Hello"
        );
        assert_eq!(
            refused(RelayConnection::connect(ws).await),
            ErrorCode::TooManyConnections
        );
        // Another source is still served.
        assert!(matches!(
            first_message_from("127.0.0.3", relay.addr).await,
            ServerMessage::Hello { .. }
        ));
    })
    .await
    .expect("finished within the deadline");
}
