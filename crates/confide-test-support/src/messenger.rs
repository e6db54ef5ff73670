//! A minimal test endpoint over `Delivery`, standing in for the facade in the transport's
//! simulations and the examples' TCP relay tests.
//!
//! WARNING: test only. Its "acknowledgements" and sender field are plaintext and
//! unauthenticated; the real facade seals both inside the session.

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
    /// A new message arrived (duplicates are not reported).
    Received {
        /// The sender's mailbox, as it claimed it.
        from: Address,
        /// The frame id.
        id: FrameId,
        /// The message body.
        body: Vec<u8>,
    },
    /// The recipient acknowledged a message.
    Delivered(FrameId),
    /// A message gave up.
    Failed(FrameId),
}

/// A test endpoint: a [`Delivery`] machine plus a plaintext message and acknowledgement format.
#[derive(Debug)]
pub struct Messenger {
    /// Its own mailbox.
    pub me: Address,
    /// Its delivery machine.
    pub delivery: Delivery,
    events: VecDeque<AppEvent>,
    /// How often [`Messenger::restart`] ran.
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
    /// A messenger with an empty delivery machine, reachable at `me`.
    #[must_use]
    pub fn new(me: Address) -> Self {
        Self {
            me,
            delivery: Delivery::new(),
            events: VecDeque::new(),
            restarts: 0,
        }
    }

    /// Sends `body` to `to` (reliably: retransmitted until acknowledged or given up).
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
            Input::RelayReceipt { id, now } => {
                let _ = self.delivery.on_relay_receipt(now, id);
            }
            Input::RelayReconnected { now } => {
                self.delivery.on_relay_reconnected();
                self.delivery.handle_timeout(now);
            }
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
