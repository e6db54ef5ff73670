//! The push hook, with the webhook, against a fake push gateway (a TCP listener in the test):
//! an owner without a connection is woken by a POST that carries nothing but its registered
//! URL; a connected owner is not; malformed, over-long or disallowed URLs are refused and
//! nothing is stored.
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
use confide_relay::client::RelayConnection;
use confide_relay::consts::MAX_PUSH_URL_LEN;
use confide_relay::protocol::{ErrorCode, Request, RequestBody, ServerMessage, frame_message};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio::sync::mpsc;

/// A fake push gateway: every request it receives (head and any body), answered `204`.
struct Gateway {
    addr: SocketAddr,
    requests: mpsc::UnboundedReceiver<Vec<u8>>,
}

impl Gateway {
    async fn start() -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (tx, requests) = mpsc::unbounded_channel();
        tokio::spawn(async move {
            loop {
                let (mut stream, _) = listener.accept().await.unwrap();
                let tx = tx.clone();
                tokio::spawn(async move {
                    let mut got = Vec::new();
                    let mut buf = [0u8; 1024];
                    // The relay closes its side after reading the status line; read what it
                    // sent until the head ends, then a moment more for any body.
                    while !got.windows(4).any(|w| w == b"\r\n\r\n") {
                        let n = stream.read(&mut buf).await.unwrap();
                        if n == 0 {
                            break;
                        }
                        got.extend_from_slice(&buf[..n]);
                    }
                    if let Ok(Ok(n)) =
                        tokio::time::timeout(Duration::from_millis(100), stream.read(&mut buf))
                            .await
                    {
                        got.extend_from_slice(&buf[..n]);
                    }
                    let _ = stream
                        .write_all(b"HTTP/1.1 204 No Content\r\nContent-Length: 0\r\n\r\n")
                        .await;
                    let _ = tx.send(got);
                });
            }
        });
        Self { addr, requests }
    }

    async fn next(&mut self, within: Duration) -> Option<Vec<u8>> {
        tokio::time::timeout(within, self.requests.recv())
            .await
            .ok()
            .flatten()
    }
}

fn start_relay(dir: &TempDir, gateway: SocketAddr) -> RelayProcess {
    RelayProcess::start(dir.path(), &["--push-gateway", &gateway.to_string()])
}

#[tokio::test]
async fn an_offline_owner_gets_a_content_free_post_and_a_connected_owner_none() {
    within(async {
        let dir = TempDir::new("push");
        let mut gateway = Gateway::start().await;
        let relay = start_relay(&dir, gateway.addr);
        let mb = address("push-owner");
        let url = format!("http://{}/wake/device-7", gateway.addr);
        let mut o = owner(relay.addr, &mb, &key(1)).await;
        o.register_push(url.as_bytes()).await.unwrap();
        let mut sender = RelayConnection::connect(relay.addr).await.unwrap();

        // Connected: the frame is pushed on the connection, the gateway hears nothing.
        let first = frame_id(1);
        sender
            .send(&mb, None, &frame(first, b"while connected"))
            .await
            .unwrap();
        assert_eq!(id_of(&delivery(&mut o).await), first);
        o.confirm(&[first]).await.unwrap();
        assert!(
            gateway.next(Duration::from_millis(500)).await.is_none(),
            "no push while the owner is connected"
        );

        // Offline: one POST, with an empty body and nothing about the frame.
        drop(o);
        tokio::time::sleep(Duration::from_millis(300)).await;
        let second = frame_id(0x00c0_ffee);
        let payload = b"secret payload while offline";
        sender
            .send(&mb, None, &frame(second, payload))
            .await
            .unwrap();
        let request = gateway
            .next(Duration::from_secs(5))
            .await
            .expect("a push within 5 s");
        let text = String::from_utf8(request.clone()).unwrap();
        assert!(
            text.starts_with("POST /wake/device-7 HTTP/1.1\r\n"),
            "{text:?}"
        );
        assert!(text.contains("\r\nContent-Length: 0\r\n"), "{text:?}");
        assert!(text.ends_with("\r\n\r\n"), "no body: {text:?}");
        let lower = text.to_ascii_lowercase();
        for leak in [
            hex::encode(second.as_bytes()),
            "c0ffee".to_owned(),
            "push-owner".to_owned(),
            "secret".to_owned(),
        ] {
            assert!(
                !lower.contains(&leak),
                "the push carries {leak:?}: {text:?}"
            );
        }
        // A second frame within the push interval pushes nothing more.
        sender
            .send(&mb, None, &frame(frame_id(3), b"more"))
            .await
            .unwrap();
        assert!(gateway.next(Duration::from_millis(500)).await.is_none());

        // The owner comes back: both frames are there.
        let mut o = RelayConnection::connect(relay.addr).await.unwrap();
        o.authenticate(&mb, &key(1)).await.unwrap();
        assert_eq!(id_of(&delivery(&mut o).await), second);
        assert_eq!(id_of(&delivery(&mut o).await), frame_id(3));
    })
    .await;
}

async fn raw(c: &mut RelayConnection, body: &[u8]) -> ServerMessage {
    c.write_raw(&frame_message(body)).await.unwrap();
    c.next_reply().await.unwrap()
}

#[tokio::test]
async fn malformed_overlong_or_disallowed_push_urls_are_refused_and_nothing_is_stored() {
    within(async {
        let dir = TempDir::new("push-refused");
        let mut gateway = Gateway::start().await;
        let relay = start_relay(&dir, gateway.addr);
        let mb = address("push-refused");
        let gw = gateway.addr;

        // Only an owner may register.
        let mut anonymous = RelayConnection::connect(relay.addr).await.unwrap();
        assert_eq!(
            refused(
                anonymous
                    .register_push(format!("http://{gw}/x").as_bytes())
                    .await
            ),
            ErrorCode::NotAuthenticated
        );

        let mut o = owner(relay.addr, &mb, &key(2)).await;
        // Longer than MAX_PUSH_URL_LEN: the request does not decode.
        let long = format!("http://{gw}/{}", "a".repeat(MAX_PUSH_URL_LEN));
        let mut body = vec![0x01, 0x0B, 0, 0, 0, 9];
        body.extend_from_slice(&u16::try_from(long.len()).unwrap().to_be_bytes());
        body.extend_from_slice(long.as_bytes());
        assert_eq!(
            raw(&mut o, &body).await,
            ServerMessage::Error {
                id: 9,
                code: ErrorCode::Malformed
            }
        );
        assert!(
            Request {
                id: 9,
                body: RequestBody::RegisterPush {
                    url: long.into_bytes()
                }
            }
            .to_bytes()
            .is_err()
        );
        for bad in [
            format!("ftp://{gw}/x"),
            format!("http://{gw}/with space"),
            format!("http://{gw}/x\r\nX-Injected: 1"),
            format!("https://{gw}/x"),
            format!("http://user@{gw}/x"),
            "http://192.0.2.1:80/x".to_owned(),
            format!("http://{}:{}/x", gw.ip(), gw.port().wrapping_add(1)),
            "not a url".to_owned(),
        ] {
            assert_eq!(
                refused(o.register_push(bad.as_bytes()).await),
                ErrorCode::InvalidPushUrl,
                "{bad:?}"
            );
        }
        // Nothing was stored: an offline owner is not pushed.
        drop(o);
        tokio::time::sleep(Duration::from_millis(300)).await;
        let mut sender = RelayConnection::connect(relay.addr).await.unwrap();
        sender
            .send(&mb, None, &frame(frame_id(1), b"x"))
            .await
            .unwrap();
        assert!(gateway.next(Duration::from_millis(800)).await.is_none());

        // A registration removed (empty URL) is not used either.
        let mut o = RelayConnection::connect(relay.addr).await.unwrap();
        o.authenticate(&mb, &key(2)).await.unwrap();
        o.register_push(format!("http://{gw}/ok").as_bytes())
            .await
            .unwrap();
        o.register_push(b"").await.unwrap();
        drop(o);
        tokio::time::sleep(Duration::from_millis(300)).await;
        sender
            .send(&mb, None, &frame(frame_id(2), b"y"))
            .await
            .unwrap();
        assert!(gateway.next(Duration::from_millis(800)).await.is_none());

        // A relay without a push gateway refuses registrations.
        let dir2 = TempDir::new("push-off");
        let plain = RelayProcess::start(dir2.path(), &[]);
        let mut o = owner(plain.addr, &mb, &key(2)).await;
        assert_eq!(
            refused(o.register_push(format!("http://{gw}/x").as_bytes()).await),
            ErrorCode::PushUnavailable
        );
    })
    .await;
}
