//! A minimal test endpoint over `Delivery`, standing in for the facade.
//!
//! WARNING: test only. Its "acknowledgements" and sender field are plaintext and
//! unauthenticated; the real facade seals both inside the session.
#![allow(dead_code, unreachable_pub)]

use std::collections::VecDeque;

use confide_crypto::{CryptoRng, Timestamp};
use confide_transport::driver::{Input, Output, SansIoEndpoint};
use confide_transport::{
    AckOutcome, Address, Delivery, DeliveryEvent, Frame, FrameId, IncomingStatus, OutboxError,
    PayloadDigest,
};

const TAG_MESSAGE: u8 = 1;
const TAG_ACK: u8 = 2;

/// What the test app sees.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AppEvent {
    Received {
        from: Address,
        id: FrameId,
        body: Vec<u8>,
    },
    Delivered(FrameId),
    Failed(FrameId),
}

#[derive(Debug)]
pub struct Messenger {
    pub me: Address,
    pub delivery: Delivery,
    events: VecDeque<AppEvent>,
    pub restarts: u32,
}

fn encode_app(tag: u8, from: &Address, rest: &[u8]) -> Vec<u8> {
    let mut out = vec![tag, u8::try_from(from.len()).unwrap()];
    out.extend_from_slice(from.as_bytes());
    out.extend_from_slice(rest);
    out
}

fn decode_app(payload: &[u8]) -> Option<(u8, Address, &[u8])> {
    let (&tag, rest) = payload.split_first()?;
    let (&len, rest) = rest.split_first()?;
    let (from, rest) = rest.split_at_checked(usize::from(len))?;
    Some((tag, Address::new(from).ok()?, rest))
}

impl Messenger {
    pub fn new(me: Address) -> Self {
        Self {
            me,
            delivery: Delivery::new(),
            events: VecDeque::new(),
            restarts: 0,
        }
    }

    pub fn send<R: CryptoRng + ?Sized>(
        &mut self,
        rng: &mut R,
        now: Timestamp,
        to: &Address,
        body: &[u8],
    ) -> Result<FrameId, OutboxError> {
        let payload = encode_app(TAG_MESSAGE, &self.me, body);
        self.delivery.send(rng, now, to.clone(), payload)
    }

    /// Simulates a restart: the delivery state goes through its byte encoding.
    pub fn restart(&mut self) {
        let bytes = self.delivery.to_bytes();
        let restored = Delivery::from_bytes(&bytes).expect("own state decodes");
        assert_eq!(restored, self.delivery, "restore is exact");
        assert_eq!(restored.to_bytes(), bytes, "encoding is canonical");
        self.delivery = restored;
        self.restarts += 1;
    }

    fn ack<R: CryptoRng + ?Sized>(&mut self, to: Address, id: FrameId, rng: &mut R) {
        let payload = encode_app(TAG_ACK, &self.me, id.as_bytes());
        // A full ack queue just means this ack is lost; the sender retransmits.
        let _ = self.delivery.send_unacknowledged(rng, to, payload);
    }
}

impl SansIoEndpoint for Messenger {
    type Event = AppEvent;

    fn handle_input<R: CryptoRng + ?Sized>(&mut self, rng: &mut R, input: Input<'_>) {
        match input {
            Input::Receive { bytes, now } => self.receive(bytes, now, rng),
            _ => self.delivery.handle_timeout(input.now()),
        }
    }

    fn poll_output(&mut self) -> Output<AppEvent> {
        if let Some(tx) = self.delivery.poll_transmit() {
            return Output::Transmit(tx);
        }
        while let Some(event) = self.delivery.poll_event() {
            let mapped = match event {
                DeliveryEvent::Delivered(id) => AppEvent::Delivered(id),
                DeliveryEvent::DeliveryFailed(id) => AppEvent::Failed(id),
                _ => continue,
            };
            self.events.push_back(mapped);
        }
        if let Some(e) = self.events.pop_front() {
            return Output::Event(e);
        }
        Output::Timeout(self.delivery.poll_timeout())
    }
}

impl Messenger {
    fn receive<R: CryptoRng + ?Sized>(&mut self, frame: &[u8], now: Timestamp, rng: &mut R) {
        let Ok(Frame::Data { id, payload }) = Frame::from_bytes(frame) else {
            return;
        };
        let digest = PayloadDigest::from_bytes(confide_crypto::kdf::sha256(&[&payload]));
        match self.delivery.check_incoming(id, &digest, now) {
            IncomingStatus::Duplicate { from } => {
                if self.delivery.grant_reacknowledgement(id, now) {
                    self.ack(from, id, rng);
                }
                return;
            }
            IncomingStatus::Altered { .. } => return,
            _ => {}
        }
        let Some((tag, from, rest)) = decode_app(&payload) else {
            return;
        };
        match tag {
            TAG_MESSAGE => {
                if self.delivery.accept_incoming(id, from.clone(), digest, now)
                    == IncomingStatus::New
                {
                    self.events.push_back(AppEvent::Received {
                        from: from.clone(),
                        id,
                        body: rest.to_vec(),
                    });
                }
                self.ack(from, id, rng);
            }
            TAG_ACK => {
                if let Ok(acked) = <[u8; 16]>::try_from(rest) {
                    let _: AckOutcome = self.delivery.on_ack(&from, FrameId::from_bytes(acked));
                }
            }
            _ => {}
        }
    }
}

/// Deterministic sample frames: (name, id, payload).
pub fn sample_frames() -> Vec<(&'static str, FrameId, Vec<u8>)> {
    vec![
        ("data-empty-payload", FrameId::from_bytes([0; 16]), vec![]),
        (
            "data-short-payload",
            FrameId::from_bytes(core::array::from_fn(|i| u8::try_from(i).unwrap())),
            b"opaque sealed envelope".to_vec(),
        ),
        (
            "data-300-byte-payload",
            FrameId::from_bytes([0xa5; 16]),
            (0..300u32)
                .map(|i| u8::try_from(i % 251).unwrap())
                .collect(),
        ),
    ]
}

/// A deterministic delivery machine that exercises every part of the state encoding:
/// outbox entries (one retransmitted), a queued outbox transmit, a queued unacknowledged
/// frame, unpolled events of both kinds, and dedup entries. Returns the machine and the
/// frames polled along the way.
pub fn sample_state(seed: u8) -> (Delivery, Vec<Vec<u8>>) {
    use chacha20::ChaCha20Rng;
    use confide_crypto::Duration;
    use rand_core::SeedableRng;

    let mut rng = ChaCha20Rng::from_seed([seed; 32]);
    let t0 = Timestamp::from_millis(1_700_000_000_000);
    let alice = Address::new(b"alice").unwrap();
    let bob = Address::new(b"bob-mailbox").unwrap();
    let mut d = Delivery::new();
    let mut frames = Vec::new();
    // Sent a week ago: gives up at the timeout below, leaving a DeliveryFailed event.
    let week_ago = t0.saturating_sub(confide_transport::consts::GIVE_UP_AFTER);
    let lost = d
        .send(
            &mut rng,
            week_ago.saturating_add(Duration::from_secs(1)),
            bob.clone(),
            b"lost".to_vec(),
        )
        .unwrap();
    let first = d
        .send(&mut rng, t0, bob.clone(), b"first".to_vec())
        .unwrap();
    let second = d
        .send(
            &mut rng,
            t0.saturating_add(Duration::from_secs(1)),
            alice.clone(),
            b"second".to_vec(),
        )
        .unwrap();
    while let Some(tx) = d.poll_transmit() {
        frames.push(tx.frame);
    }
    let _ = d.accept_incoming(
        FrameId::from_bytes([seed; 16]),
        alice.clone(),
        PayloadDigest::from_bytes([seed; 32]),
        t0,
    );
    let _ = d.accept_incoming(
        FrameId::from_bytes([seed ^ 0xff; 16]),
        bob.clone(),
        PayloadDigest::from_bytes([seed ^ 0xff; 32]),
        t0,
    );
    // The first message is retransmitted once and stays queued.
    d.handle_timeout(t0.saturating_add(Duration::from_millis(2_600)));
    let _ = d.on_ack(&alice, second);
    let _ = d
        .send(
            &mut rng,
            t0.saturating_add(Duration::from_secs(3)),
            bob.clone(),
            b"third".to_vec(),
        )
        .unwrap();
    let _ = d
        .send_unacknowledged(&mut rng, alice.clone(), b"ack".to_vec())
        .unwrap();
    let doomed = d.send(&mut rng, t0, alice, b"doomed".to_vec()).unwrap();
    let _ = d.cancel(doomed);
    assert!(d.is_waiting(first));
    let mut probe = d.clone();
    assert_eq!(
        probe.poll_event(),
        Some(DeliveryEvent::DeliveryFailed(lost))
    );
    assert_eq!(probe.poll_event(), Some(DeliveryEvent::Delivered(second)));
    (d, frames)
}
