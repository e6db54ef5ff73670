//! The relay as a separate process on 127.0.0.1: mailboxes, receipts, one copy per frame id,
//! authentication, the directory, tokens, limits, the issuer, and refusals of malformed input.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use crate::common;

use std::collections::HashSet;

use common::*;
use confide_crypto::identity::IdentityKeyPair;
use confide_relay::client::{ClientError, RelayConnection};
use confide_relay::protocol::{
    BundleKind, ErrorCode, Request, RequestBody, ServerMessage, authenticate_message, frame_message,
};
use confide_sealed::{DeliveryToken, ProfileKey, Role, SenderCertificate};
use confide_transport::RelayToken;

#[tokio::test]
async fn a_frame_is_stored_with_a_receipt_delivered_and_deleted_on_confirmation() {
    within(async {
        let dir = TempDir::new("store");
        let relay = RelayProcess::start(dir.path(), &[]);
        let mailbox = address("counselor");
        let k = key(1);
        let mut o = owner(relay.addr, &mailbox, &k).await;
        let mut s = RelayConnection::connect(relay.addr).await.unwrap();
        let id = frame_id(1);
        let bytes = frame(id, b"sealed envelope");
        assert_eq!(s.send(&mailbox, None, &bytes).await.unwrap(), id, "receipt");
        assert_eq!(delivery(&mut o).await, bytes, "pushed while connected");
        drop(o);

        // Not confirmed: delivered again on the next authentication.
        let mut o = RelayConnection::connect(relay.addr).await.unwrap();
        o.authenticate(&mailbox, &k).await.unwrap();
        assert_eq!(delivery(&mut o).await, bytes, "redelivered until confirmed");
        o.confirm(&[id]).await.unwrap();
        drop(o);

        let mut o = RelayConnection::connect(relay.addr).await.unwrap();
        o.authenticate(&mailbox, &k).await.unwrap();
        assert_only_probe_waits(relay.addr, &mailbox, &mut o, 99).await;
    })
    .await;
}

#[tokio::test]
async fn one_copy_per_frame_id_and_no_redelivery_of_a_delivered_frame() {
    within(async {
        let dir = TempDir::new("copies");
        let relay = RelayProcess::start(dir.path(), &[]);
        let mailbox = address("offline owner");
        let k = key(2);
        drop(owner(relay.addr, &mailbox, &k).await);
        let id = frame_id(7);
        let bytes = frame(id, b"the same frame, retransmitted");
        let mut s = RelayConnection::connect(relay.addr).await.unwrap();
        for _ in 0..18 {
            assert_eq!(s.send(&mailbox, None, &bytes).await.unwrap(), id);
        }
        let mut o = RelayConnection::connect(relay.addr).await.unwrap();
        o.authenticate(&mailbox, &k).await.unwrap();
        assert_eq!(delivery(&mut o).await, bytes);
        o.confirm(&[id]).await.unwrap();
        assert_only_probe_waits(relay.addr, &mailbox, &mut o, 100).await;

        // A retransmission of the delivered frame gets a receipt but is not delivered again.
        assert_eq!(s.send(&mailbox, None, &bytes).await.unwrap(), id);
        assert_only_probe_waits(relay.addr, &mailbox, &mut o, 101).await;

        // A re-encryption under the same id (another payload) is delivered.
        let reencrypted = frame(id, b"the same message, sealed again");
        assert_eq!(s.send(&mailbox, None, &reencrypted).await.unwrap(), id);
        assert_eq!(delivery(&mut o).await, reencrypted);
        o.confirm(&[id]).await.unwrap();

        // A later copy under the same id replaces an undelivered one.
        drop(o);
        let first = frame(frame_id(8), b"first sealing");
        let second = frame(frame_id(8), b"second sealing");
        s.send(&mailbox, None, &first).await.unwrap();
        s.send(&mailbox, None, &second).await.unwrap();
        let mut o = RelayConnection::connect(relay.addr).await.unwrap();
        o.authenticate(&mailbox, &k).await.unwrap();
        assert_eq!(delivery(&mut o).await, second);
        o.confirm(&[frame_id(8)]).await.unwrap();
        assert_only_probe_waits(relay.addr, &mailbox, &mut o, 102).await;
    })
    .await;
}

#[tokio::test]
async fn every_receipted_frame_survives_kill_9_during_a_burst() {
    within(async {
        let dir = TempDir::new("kill9");
        let relay = RelayProcess::start(dir.path(), &[]);
        let mailbox = address("burst target");
        let k = key(3);
        drop(owner(relay.addr, &mailbox, &k).await);
        let addr = relay.addr;
        // Four senders send as fast as they can; the relay is killed mid-burst.
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
        let mut senders = Vec::new();
        for t in 0..4u32 {
            let tx = tx.clone();
            let mailbox = mailbox.clone();
            senders.push(tokio::spawn(async move {
                let mut s = RelayConnection::connect(addr).await.unwrap();
                for n in 0..500u32 {
                    let id = frame_id(t * 10_000 + n);
                    match s.send(&mailbox, None, &frame(id, &[t as u8; 300])).await {
                        Ok(got) => {
                            assert_eq!(got, id);
                            tx.send(id).unwrap();
                        }
                        Err(_) => return,
                    }
                }
            }));
        }
        drop(tx);
        let mut receipted = HashSet::new();
        while receipted.len() < 150 {
            receipted.insert(rx.recv().await.expect("receipts before the kill"));
        }
        relay.kill();
        for s in senders {
            s.await.unwrap();
        }
        while let Ok(id) = rx.try_recv() {
            receipted.insert(id);
        }
        assert!(receipted.len() < 2000, "the kill came mid-burst");

        let relay = RelayProcess::start(dir.path(), &[]);
        let mut o = RelayConnection::connect(relay.addr).await.unwrap();
        o.authenticate(&mailbox, &k).await.unwrap();
        let mut delivered = HashSet::new();
        while !receipted.is_subset(&delivered) {
            delivered.insert(id_of(&delivery(&mut o).await));
        }
        println!(
            "{} frames receipted before kill -9, all delivered after restart",
            receipted.len()
        );
    })
    .await;
}

/// Sends raw bytes as one length-prefixed message and returns the relay's answer.
async fn raw(c: &mut RelayConnection, body: &[u8]) -> ServerMessage {
    c.write_raw(&frame_message(body)).await.unwrap();
    c.next_reply().await.unwrap()
}

#[tokio::test]
async fn malformed_and_wrong_key_requests_are_refused_nothing_is_stored_and_the_relay_keeps_serving()
 {
    within(async {
        let dir = TempDir::new("barrage");
        let relay = RelayProcess::start(dir.path(), &[]);
        let mailbox = address("barrage target");
        let k = key(4);
        let mut o = owner(relay.addr, &mailbox, &k).await;
        let good_frame = frame(frame_id(1), b"payload");
        let valid: Vec<RequestBody> = vec![
            RequestBody::CreateMailbox {
                address: mailbox.clone(),
                owner_key: key(5).verifying_key().to_bytes(),
                verifier: Some([3; 32]),
                signature: [0; 64],
            },
            RequestBody::Authenticate {
                address: mailbox.clone(),
                signature: [0; 64],
            },
            RequestBody::Send {
                to: mailbox.clone(),
                token: Some(RelayToken::new([1; 16])),
                frame: good_frame.clone(),
            },
            RequestBody::Confirm {
                ids: vec![frame_id(1)],
            },
            RequestBody::SetVerifier {
                verifier: Some([9; 32]),
            },
            RequestBody::UploadBundles {
                one_time: vec![vec![1; 10]],
                last_resort: Some(vec![2; 10]),
            },
            RequestBody::FetchBundle {
                address: mailbox.clone(),
            },
            RequestBody::BundleCount,
            RequestBody::RequestCertificate {
                device_id: 1,
                identity: [0; 128],
            },
            RequestBody::Ping,
        ];
        let mut refusals = 0;
        for body in &valid {
            // A fresh connection per request type keeps each under the connection rate limit.
            let mut c = RelayConnection::connect(relay.addr).await.unwrap();
            let bytes = Request {
                id: 77,
                body: body.clone(),
            }
            .to_bytes()
            .unwrap();
            // Truncated at every length, with a trailing byte, with another version.
            let mut variants: Vec<Vec<u8>> =
                (1..bytes.len()).map(|n| bytes[..n].to_vec()).collect();
            variants.push([bytes.as_slice(), &[0]].concat());
            let mut other_version = bytes.clone();
            other_version[0] = 2;
            variants.push(other_version);
            for v in variants {
                match raw(&mut c, &v).await {
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
        let mut c = RelayConnection::connect(relay.addr).await.unwrap();
        // Unknown request types.
        for ty in [0x00u8, 0x0B, 0x7F, 0x80, 0xFF] {
            let m = raw(&mut c, &[1, ty, 0, 0, 0, 9]).await;
            assert_eq!(
                m,
                ServerMessage::Error {
                    id: 9,
                    code: ErrorCode::Malformed
                }
            );
        }

        // Well-formed requests with the wrong key or no authentication.
        let expected = [
            ErrorCode::AuthenticationFailed, // create: signature by nobody
            ErrorCode::AuthenticationFailed, // authenticate: zero signature
            ErrorCode::NotAuthenticated,     // unreachable placeholder (send below)
            ErrorCode::NotAuthenticated,     // confirm
            ErrorCode::NotAuthenticated,     // set verifier
            ErrorCode::NotAuthenticated,     // upload
            ErrorCode::NoBundle,             // fetch: none uploaded
            ErrorCode::NotAuthenticated,     // count
            ErrorCode::NotAuthenticated,     // certificate
        ];
        for (body, code) in valid.iter().zip(expected) {
            if matches!(body, RequestBody::Send { .. }) {
                continue;
            }
            assert_eq!(refused(c.request(body.clone()).await), code);
        }
        // A Send of bytes that are not a transport frame, or to no mailbox.
        for bad in [
            vec![],
            good_frame[..21].to_vec(),
            [&good_frame[..], &[0]].concat(),
            {
                let mut f = good_frame.clone();
                f[0] = 2;
                f
            },
            {
                let mut f = good_frame.clone();
                f[1] = 2;
                f
            },
        ] {
            assert_eq!(
                refused(c.send(&mailbox, None, &bad).await),
                ErrorCode::InvalidFrame
            );
        }
        assert_eq!(
            refused(c.send(&address("nobody"), None, &good_frame).await),
            ErrorCode::NoSuchMailbox
        );
        c.ping().await.unwrap();
        println!("{refusals} malformed requests refused");

        // A framing violation (length 0) is answered, then the connection closes.
        c.write_raw(&[0, 0, 0, 0]).await.unwrap();
        assert_eq!(
            c.next_reply().await.unwrap(),
            ServerMessage::Error {
                id: 0,
                code: ErrorCode::FramingViolation
            }
        );
        assert!(
            c.next_reply().await.is_err(),
            "closed after a framing violation"
        );
        // So is an announced length over the maximum.
        let mut c = RelayConnection::connect(relay.addr).await.unwrap();
        c.write_raw(&[0, 0x10, 0, 1]).await.unwrap();
        assert!(matches!(
            c.next_reply().await.unwrap(),
            ServerMessage::Error {
                code: ErrorCode::FramingViolation,
                ..
            }
        ));

        // Nothing was stored (or uploaded), and the relay still serves.
        assert_only_probe_waits(relay.addr, &mailbox, &mut o, 500).await;
        assert_eq!(o.bundle_count().await.unwrap(), (0, false));
    })
    .await;
}

#[tokio::test]
async fn a_mailbox_is_readable_only_by_its_owner() {
    within(async {
        let dir = TempDir::new("owner");
        let relay = RelayProcess::start(dir.path(), &[]);
        let mailbox = address("private");
        let k = key(6);
        drop(owner(relay.addr, &mailbox, &k).await);
        let mut s = RelayConnection::connect(relay.addr).await.unwrap();
        s.send(&mailbox, None, &frame(frame_id(1), b"secret"))
            .await
            .unwrap();

        // Another key cannot take the mailbox over, nor authenticate for it.
        let thief = key(7);
        let mut a = RelayConnection::connect(relay.addr).await.unwrap();
        assert_eq!(
            refused(a.create_mailbox(&mailbox, &thief, None).await),
            ErrorCode::MailboxTaken
        );
        assert_eq!(
            refused(a.authenticate(&mailbox, &thief).await),
            ErrorCode::AuthenticationFailed
        );
        // A genuine signature made for another connection's challenge is useless here.
        let victim_conn = RelayConnection::connect(relay.addr).await.unwrap();
        let stolen = k
            .sign(&authenticate_message(victim_conn.challenge(), &mailbox))
            .to_bytes();
        assert_eq!(
            refused(
                a.request(RequestBody::Authenticate {
                    address: mailbox.clone(),
                    signature: stolen
                })
                .await
            ),
            ErrorCode::AuthenticationFailed
        );
        // Unauthenticated, it can neither confirm (delete) nor count.
        assert_eq!(
            refused(a.confirm(&[frame_id(1)]).await),
            ErrorCode::NotAuthenticated
        );
        // And it received nothing: a ping is answered with no delivery before it.
        a.ping().await.unwrap();
        assert!(
            tokio::time::timeout(std::time::Duration::from_millis(200), a.next_delivery())
                .await
                .is_err(),
            "no frame reached a connection that is not the owner's"
        );

        // The owner still gets the frame (nothing was deleted).
        let mut o = RelayConnection::connect(relay.addr).await.unwrap();
        o.authenticate(&mailbox, &k).await.unwrap();
        assert_eq!(id_of(&delivery(&mut o).await), frame_id(1));
        // One mailbox per connection.
        assert_eq!(
            refused(o.authenticate(&mailbox, &k).await),
            ErrorCode::AlreadyAuthenticated
        );
    })
    .await;
}

#[tokio::test]
async fn each_one_time_bundle_is_handed_out_exactly_once_under_concurrent_fetches() {
    within(async {
        let dir = TempDir::new("prekeys");
        let relay = RelayProcess::start(dir.path(), &[]);
        let mailbox = address("bundles");
        let mut o = owner(relay.addr, &mailbox, &key(8)).await;
        let bundle = |n: u32| [b"one-time ".as_slice(), &n.to_be_bytes()].concat();
        for chunk in 0..2u32 {
            o.upload_bundles(
                (chunk * 60..chunk * 60 + 60).map(bundle).collect(),
                Some(b"last resort".to_vec()),
            )
            .await
            .unwrap();
        }
        assert_eq!(o.bundle_count().await.unwrap(), (120, true));
        assert_eq!(
            refused(o.upload_bundles(vec![vec![1]; 81], None).await),
            ErrorCode::TooManyBundles
        );

        let mut tasks = Vec::new();
        for _ in 0..6 {
            let addr = relay.addr;
            let mailbox = mailbox.clone();
            tasks.push(tokio::spawn(async move {
                let mut c = RelayConnection::connect(addr).await.unwrap();
                let mut got = Vec::new();
                for _ in 0..25 {
                    got.push(c.fetch_bundle(&mailbox).await.unwrap());
                }
                got
            }));
        }
        let mut one_time = Vec::new();
        let mut last_resort = 0;
        for t in tasks {
            for (kind, b) in t.await.unwrap() {
                match kind {
                    BundleKind::OneTime => one_time.push(b),
                    BundleKind::LastResort => {
                        assert_eq!(b, b"last resort");
                        last_resort += 1;
                    }
                    _ => unreachable!(),
                }
            }
        }
        let distinct: HashSet<_> = one_time.iter().cloned().collect();
        assert_eq!(one_time.len(), 120, "every one-time bundle handed out");
        assert_eq!(distinct.len(), 120, "none handed out twice");
        assert_eq!(last_resort, 30);
        assert_eq!(o.bundle_count().await.unwrap(), (0, true));
        assert_eq!(
            refused(o.fetch_bundle(&address("no bundles")).await),
            ErrorCode::NoBundle
        );
    })
    .await;
}

#[tokio::test]
async fn a_token_protected_mailbox_refuses_a_missing_or_wrong_token() {
    within(async {
        let dir = TempDir::new("token");
        let relay = RelayProcess::start(dir.path(), &[]);
        let mailbox = address("protected");
        let token = DeliveryToken::derive(&ProfileKey::new([4; 32])).unwrap();
        let k = key(9);
        let mut o = RelayConnection::connect(relay.addr).await.unwrap();
        o.create_mailbox(&mailbox, &k, Some(token.verifier().to_bytes()))
            .await
            .unwrap();
        let mut s = RelayConnection::connect(relay.addr).await.unwrap();
        let f = frame(frame_id(1), b"x");
        assert_eq!(
            refused(s.send(&mailbox, None, &f).await),
            ErrorCode::TokenRefused
        );
        assert_eq!(
            refused(s.send(&mailbox, Some(&RelayToken::new([0; 16])), &f).await),
            ErrorCode::TokenRefused
        );
        let right = RelayToken::new(*token.expose());
        let good = frame(frame_id(2), b"from a contact");
        s.send(&mailbox, Some(&right), &good).await.unwrap();
        assert_eq!(
            delivery(&mut o).await,
            good,
            "only the frame with the token"
        );

        // Rotating the token cuts the old one off.
        let new_token = DeliveryToken::derive(&ProfileKey::new([5; 32])).unwrap();
        o.set_verifier(Some(new_token.verifier().to_bytes()))
            .await
            .unwrap();
        assert_eq!(
            refused(s.send(&mailbox, Some(&right), &f).await),
            ErrorCode::TokenRefused
        );
    })
    .await;
}

#[tokio::test]
async fn a_full_mailbox_refuses_with_a_typed_error() {
    within(async {
        let dir = TempDir::new("full");
        let relay = RelayProcess::start(
            dir.path(),
            &[
                "--max-frames-per-mailbox",
                "3",
                "--max-bytes-per-mailbox",
                "100000",
            ],
        );
        let mailbox = address("small");
        let k = key(10);
        drop(owner(relay.addr, &mailbox, &k).await);
        let mut s = RelayConnection::connect(relay.addr).await.unwrap();
        for n in 0..3 {
            s.send(&mailbox, None, &frame(frame_id(n), b"x"))
                .await
                .unwrap();
        }
        assert_eq!(
            refused(s.send(&mailbox, None, &frame(frame_id(3), b"x")).await),
            ErrorCode::MailboxFull
        );
        // A copy of a waiting frame still gets its receipt (nothing new is stored).
        s.send(&mailbox, None, &frame(frame_id(0), b"x"))
            .await
            .unwrap();
        let mut o = RelayConnection::connect(relay.addr).await.unwrap();
        o.authenticate(&mailbox, &k).await.unwrap();
        let mut ids = Vec::new();
        for _ in 0..3 {
            ids.push(id_of(&delivery(&mut o).await));
        }
        o.confirm(&ids).await.unwrap();
        let big = vec![0u8; 120_000];
        assert_eq!(
            refused(s.send(&mailbox, None, &frame(frame_id(4), &big)).await),
            ErrorCode::MailboxBytesFull
        );
        s.send(&mailbox, None, &frame(frame_id(5), b"fits"))
            .await
            .unwrap();
    })
    .await;
}

#[tokio::test]
async fn the_issuer_certifies_owners_as_clients_and_staff_only_from_the_command_line() {
    within(async {
        let dir = TempDir::new("issuer");
        let (roots, server_file) = init_issuer(dir.path());
        let root_file = dir.path().join("root.key");
        #[cfg(unix)]
        for f in [&root_file, &server_file] {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(f).unwrap().permissions().mode() & 0o777;
            assert_eq!(mode, 0o600, "key files are private");
        }
        // Never overwritten.
        let again = std::process::Command::new(env!("CARGO_BIN_EXE_confide-relay"))
            .args(["init-root", "--root-key-file", root_file.to_str().unwrap()])
            .output()
            .unwrap();
        assert!(!again.status.success());

        let relay = RelayProcess::start(
            dir.path(),
            &["--server-key-file", server_file.to_str().unwrap()],
        );
        let identity = IdentityKeyPair::generate(
            &mut <chacha20::ChaCha20Rng as rand_core::SeedableRng>::from_seed([1; 32]),
        );
        let mut c = RelayConnection::connect(relay.addr).await.unwrap();
        assert_eq!(
            refused(c.request_certificate(1, identity.public().to_bytes()).await),
            ErrorCode::NotAuthenticated
        );
        let mailbox = address("anonymous client 1");
        c.create_mailbox(&mailbox, &key(11), None).await.unwrap();
        assert_eq!(
            refused(c.request_certificate(1, [0; 128]).await),
            ErrorCode::InvalidIdentity
        );
        let (bytes, expires) = c
            .request_certificate(1, identity.public().to_bytes())
            .await
            .unwrap();
        let cert = SenderCertificate::from_bytes(&bytes).unwrap();
        let now = confide_relay::wall_clock();
        let valid = cert.validate(&roots, now).unwrap();
        assert_eq!(valid.role(), Role::Client);
        assert_eq!(valid.address().as_bytes(), mailbox.as_bytes());
        assert_eq!(valid.display_name(), None);
        assert_eq!(cert.expires_at(), expires);
        let lifetime = expires.as_millis() - now.as_millis();
        assert!(lifetime <= 24 * 3600 * 1000 && lifetime > 23 * 3600 * 1000);
        // Renewal is the same request.
        c.request_certificate(1, identity.public().to_bytes())
            .await
            .unwrap();

        // Counselors only through the operator's command.
        let hex_cert = run_cli(&[
            "issue",
            "--server-key-file",
            server_file.to_str().unwrap(),
            "--role",
            "counselor",
            "--address",
            "counselor-7",
            "--identity-hex",
            &hex::encode(identity.public().to_bytes()),
            "--name",
            "Dr. Example",
        ]);
        let staff = SenderCertificate::from_bytes(&hex::decode(hex_cert.trim()).unwrap()).unwrap();
        let staff = staff.validate(&roots, now).unwrap();
        assert_eq!(staff.role(), Role::Counselor);
        assert_eq!(staff.display_name(), Some("Dr. Example"));
        assert_eq!(staff.server_key_id(), 3);

        // A relay whose server certificate expired issues nothing.
        let expired_file = dir.path().join("expired.key");
        run_cli(&[
            "init",
            "--root-key-file",
            root_file.to_str().unwrap(),
            "--server-key-file",
            expired_file.to_str().unwrap(),
            "--server-key-id",
            "4",
            "--valid-days",
            "0",
        ]);
        let dir3 = TempDir::new("expired-issuer");
        let stale = RelayProcess::start(
            dir3.path(),
            &["--server-key-file", expired_file.to_str().unwrap()],
        );
        let mut c = owner(stale.addr, &mailbox, &key(11)).await;
        assert_eq!(
            refused(c.request_certificate(1, identity.public().to_bytes()).await),
            ErrorCode::IssuerUnavailable
        );

        // A relay without a server key says so.
        let dir2 = TempDir::new("no-issuer");
        let plain = RelayProcess::start(dir2.path(), &[]);
        let mut c = owner(plain.addr, &mailbox, &key(11)).await;
        assert_eq!(
            refused(c.request_certificate(1, identity.public().to_bytes()).await),
            ErrorCode::IssuerUnavailable
        );
    })
    .await;
}

#[tokio::test]
async fn a_connection_over_its_request_rate_is_refused_and_recovers() {
    within(async {
        let dir = TempDir::new("rate");
        let relay = RelayProcess::start(dir.path(), &[]);
        let mut c = RelayConnection::connect(relay.addr).await.unwrap();
        let mut limited = 0;
        for _ in 0..700 {
            match c.ping().await {
                Ok(()) => {}
                Err(ClientError::Refused(ErrorCode::RateLimited)) => limited += 1,
                Err(e) => panic!("{e}"),
            }
        }
        assert!(limited > 0, "the burst is bounded");
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        c.ping().await.unwrap();
    })
    .await;
}

#[test]
fn errors_carry_no_content() {
    let e = ClientError::Refused(ErrorCode::TokenRefused);
    assert_eq!(e.to_string(), "refused by the relay: TokenRefused (0x0008)");
}
