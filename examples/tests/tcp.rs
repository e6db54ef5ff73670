//! The loopback TCP relay and transport. Only 127.0.0.1 with port 0; every wait is bounded.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration as StdDuration, Instant, SystemTime, UNIX_EPOCH};

use chacha20::ChaCha20Rng;
use confide_crypto::Timestamp;
use confide_examples::tcp::{RelayServer, TcpTransport};
use confide_sim::Driver;
use confide_test_support::messenger::{AppEvent, Messenger};
use confide_transport::{Address, RelayToken, Transport, TransportError};
use rand_core::SeedableRng;

const WAIT: StdDuration = StdDuration::from_secs(10);

/// The relay's token check, as Confide apps supply it (`confide_sealed::relay_check`).
fn token_check(verifier: &[u8; 32], token: &RelayToken) -> bool {
    let computed = confide_crypto::kdf::sha256(&[b"Confide_v1_MailboxVerifier", token.expose()]);
    confide_crypto::secret::ct_eq(&computed, verifier)
}

fn addr(s: &str) -> Address {
    Address::new(s.as_bytes()).unwrap()
}

fn recv_within(t: &mut TcpTransport) -> Vec<u8> {
    let start = Instant::now();
    while start.elapsed() < WAIT {
        if let Some(frame) = t.recv().unwrap() {
            return frame;
        }
        std::thread::sleep(StdDuration::from_millis(5));
    }
    panic!("nothing arrived within {WAIT:?}");
}

#[test]
fn relay_forwards_between_connected_mailboxes() {
    let relay = RelayServer::bind(0, token_check).unwrap();
    assert!(relay.local_addr().ip().is_loopback());
    let mut a = TcpTransport::connect(relay.local_addr(), &addr("alice"), None).unwrap();
    let mut b = TcpTransport::connect(relay.local_addr(), &addr("bob"), None).unwrap();
    // Bob may register after Alice's send is routed: then the relay stores and forwards it.
    a.send(&addr("bob"), None, b"frame one").unwrap();
    a.send(&addr("bob"), None, &vec![7u8; 200 * 1024]).unwrap();
    assert_eq!(recv_within(&mut b), b"frame one");
    assert_eq!(recv_within(&mut b).len(), 200 * 1024);
    b.send(&addr("alice"), None, b"reply").unwrap();
    assert_eq!(recv_within(&mut a), b"reply");
    assert_eq!(a.recv().unwrap(), None);
}

#[test]
fn relay_stores_mail_for_offline_mailboxes() {
    let relay = RelayServer::bind(0, token_check).unwrap();
    let mut a = TcpTransport::connect(relay.local_addr(), &addr("alice"), None).unwrap();
    a.send(&addr("carol"), None, b"while you were away")
        .unwrap();
    let start = Instant::now();
    while relay.stored_frames() == 0 && start.elapsed() < WAIT {
        std::thread::sleep(StdDuration::from_millis(5));
    }
    assert_eq!(relay.stored_frames(), 1);
    let mut c = TcpTransport::connect(relay.local_addr(), &addr("carol"), None).unwrap();
    assert_eq!(recv_within(&mut c), b"while you were away");
    assert_eq!(relay.stored_frames(), 0);
}

#[test]
fn relay_closes_connections_that_break_the_protocol() {
    let relay = RelayServer::bind(0, token_check).unwrap();
    let mut raw = TcpStream::connect(relay.local_addr()).unwrap();
    raw.set_read_timeout(Some(WAIT)).unwrap();
    // Length 3, version 9: unknown version.
    raw.write_all(&[0, 0, 0, 3, 9, 1, 0]).unwrap();
    let mut buf = [0u8; 8];
    let n = raw.read(&mut buf).unwrap_or(0);
    assert_eq!(n, 0, "the relay closed the connection");
    // It still serves others.
    let mut a = TcpTransport::connect(relay.local_addr(), &addr("alice"), None).unwrap();
    a.send(&addr("alice"), None, b"note to self").unwrap();
    assert_eq!(recv_within(&mut a), b"note to self");
}

#[test]
fn a_mailbox_with_a_verifier_takes_frames_only_with_its_token() {
    let relay = RelayServer::bind(0, token_check).unwrap();
    let token = RelayToken::new([0x42; 16]);
    let verifier = confide_crypto::kdf::sha256(&[b"Confide_v1_MailboxVerifier", token.expose()]);
    let mut counselor =
        TcpTransport::connect(relay.local_addr(), &addr("counselor"), Some(verifier)).unwrap();
    // The relay handles a connection's messages in order: once this note to self arrives,
    // the registration (and its verifier) is in place.
    counselor
        .send(&addr("counselor"), Some(&token), b"registered")
        .unwrap();
    assert_eq!(recv_within(&mut counselor), b"registered");
    let mut client = TcpTransport::connect(relay.local_addr(), &addr("client"), None).unwrap();
    let wrong = RelayToken::new([0x43; 16]);
    client.send(&addr("counselor"), None, b"no token").unwrap();
    client
        .send(&addr("counselor"), Some(&wrong), b"wrong token")
        .unwrap();
    client
        .send(&addr("counselor"), Some(&token), b"with the token")
        .unwrap();
    assert_eq!(recv_within(&mut counselor), b"with the token");
    assert_eq!(relay.refused_frames(), 2);
    // The verifier outlives the connection: mail for the offline mailbox needs it too.
    drop(counselor);
    std::thread::sleep(StdDuration::from_millis(200));
    client
        .send(&addr("counselor"), None, b"still no token")
        .unwrap();
    client
        .send(&addr("counselor"), Some(&token), b"stored")
        .unwrap();
    let start = Instant::now();
    while relay.stored_frames() < 1 && start.elapsed() < WAIT {
        std::thread::sleep(StdDuration::from_millis(20));
    }
    std::thread::sleep(StdDuration::from_millis(100));
    assert_eq!(relay.stored_frames(), 1);
    assert_eq!(relay.refused_frames(), 3);
    // An open mailbox (no verifier) takes frames with or without a token.
    let mut open = TcpTransport::connect(relay.local_addr(), &addr("open"), None).unwrap();
    client.send(&addr("open"), None, b"hello").unwrap();
    assert_eq!(recv_within(&mut open), b"hello");
}

#[test]
fn transport_reports_a_closed_relay() {
    let mut relay = RelayServer::bind(0, token_check).unwrap();
    let mut a = TcpTransport::connect(relay.local_addr(), &addr("alice"), None).unwrap();
    relay.shutdown();
    let start = Instant::now();
    loop {
        match a.recv() {
            Err(e) => {
                assert_eq!(e, TransportError::Disconnected);
                break;
            }
            Ok(_) => assert!(start.elapsed() < WAIT, "disconnect not noticed"),
        }
        std::thread::sleep(StdDuration::from_millis(5));
    }
    assert!(a.send(&addr("bob"), None, b"x").is_err() || a.recv().is_err());
}

fn wall_clock() -> Timestamp {
    let ms = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_millis();
    Timestamp::from_millis(u64::try_from(ms).unwrap())
}

#[test]
fn drivers_deliver_and_acknowledge_over_the_relay() {
    let relay = RelayServer::bind(0, token_check).unwrap();
    let mut rng = ChaCha20Rng::seed_from_u64(5);
    let ta = TcpTransport::connect(relay.local_addr(), &addr("alice"), None).unwrap();
    let tb = TcpTransport::connect(relay.local_addr(), &addr("bob"), None).unwrap();
    let mut alice = Driver::new(Messenger::new(addr("alice")), ta);
    let mut bob = Driver::new(Messenger::new(addr("bob")), tb);
    let id = alice
        .endpoint_mut()
        .send(&mut rng, wall_clock(), &addr("bob"), b"hello over tcp")
        .unwrap();
    let start = Instant::now();
    let (mut got, mut delivered) = (false, false);
    while !(got && delivered) && start.elapsed() < WAIT {
        for e in alice.run_once(&mut rng, wall_clock()) {
            delivered |= e == AppEvent::Delivered(id);
        }
        for e in bob.run_once(&mut rng, wall_clock()) {
            if let AppEvent::Received { body, .. } = e {
                assert_eq!(body, b"hello over tcp");
                got = true;
            }
        }
        std::thread::sleep(StdDuration::from_millis(2));
    }
    assert!(got && delivered, "received {got}, delivered {delivered}");
    assert_eq!(alice.send_failures(), 0);
    assert_eq!(alice.endpoint().delivery.outbox_len(), 0);
}
