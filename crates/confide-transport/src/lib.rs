//! Confide's transport boundary: moving opaque bytes reliably, without doing any I/O.
//!
//! This crate knows nothing about cryptography. It gives:
//!
//! * [`Address`]: an opaque mailbox address (printed redacted);
//! * [`Transport`]: the trait an app implements to move frames between mailboxes;
//! * [`Frame`]: the versioned, strict wire frame carrying a [`FrameId`] and an opaque
//!   payload (a sealed-sender envelope);
//! * [`Delivery`]: the sans-IO reliability machine: outbox, retransmission with exponential
//!   backoff and jitter, give-up, acknowledgement bookkeeping and a dedup window, all
//!   serializable so the outbox survives restarts;
//! * [`driver`]: the run-loop contract ([`SansIoEndpoint`](driver::SansIoEndpoint), its
//!   [`Input`](driver::Input) and [`Output`](driver::Output)) that every driver of an endpoint
//!   follows.
//!
//! The simulated network and the drivers that tests use live in the unpublished `confide-sim`
//! crate; the tokio client of the reference relay lives in `confide-relay`.
//!
//! Acknowledgements are not transport frames: they travel end-to-end encrypted and
//! authenticated as the peer (inside the session, or as a list of frame ids sealed in a
//! symmetric envelope of the acknowledging side's epoch, `docs/endpoint.md`), so a relay
//! cannot forge one (making a message silently vanish); it can tell a standalone
//! acknowledgement from a text by its size (`docs/threat-model.md`). The facade reports
//! authenticated acknowledgements with [`Delivery::on_ack`]. Wire formats, timers and limits: `docs/transport.md`.
//!
//! The library never reads a clock or a random source of its own: `now` and `rng` are passed
//! in.
//!
//! ```
//! use confide_wire::{Duration, Timestamp};
//! use confide_transport::{
//!     Address, AckOutcome, Delivery, DeliveryEvent, Frame, IncomingStatus, PayloadDigest,
//! };
//! use chacha20::ChaCha20Rng;
//! use rand_core::SeedableRng;
//!
//! let mut rng = ChaCha20Rng::from_seed([1; 32]);
//! let client = Address::new(b"client mailbox").unwrap();
//! let counselor = Address::new(b"counselor mailbox").unwrap();
//! // Stands in for the network (an app hands each transmit to its `Transport`).
//! let mut wire: Vec<Vec<u8>> = Vec::new();
//! let (mut client_delivery, mut counselor_delivery) = (Delivery::new(), Delivery::new());
//! let mut now = Timestamp::from_millis(1_700_000_000_000);
//!
//! // The client's facade sends a sealed envelope (opaque here) and transmits the frame.
//! let id = client_delivery
//!     .send(&mut rng, now, counselor.clone(), b"<sealed envelope>".to_vec())
//!     .unwrap();
//! while let Some(tx) = client_delivery.poll_transmit() {
//!     assert_eq!(tx.to, counselor);
//!     wire.push(tx.frame);
//! }
//!
//! // The frame arrives; the counselor's facade dedups, opens it (learning the sender), records
//! // it, and sends an end-to-end acknowledgement back (sealed, opaque here).
//! now = now.saturating_add(Duration::from_millis(50));
//! let frame = wire.remove(0);
//! let Frame::Data { id: received, payload } = Frame::from_bytes(&frame).unwrap() else { panic!() };
//! // The facade digests the payload (its dedup digest of the envelope; any fixed digest here).
//! let digest = PayloadDigest::from_bytes([payload.len() as u8; 32]);
//! assert_eq!(counselor_delivery.check_incoming(received, &digest, now), IncomingStatus::New);
//! // ... open the sealed envelope, decrypt, authenticate the sender as `client` ...
//! assert_eq!(
//!     counselor_delivery.accept_incoming(received, client.clone(), digest, now),
//!     IncomingStatus::New
//! );
//! counselor_delivery.send_unacknowledged(&mut rng, client.clone(), b"<sealed ack>".to_vec()).unwrap();
//! while let Some(tx) = counselor_delivery.poll_transmit() {
//!     assert_eq!(tx.to, client);
//!     wire.push(tx.frame);
//! }
//!
//! // The client's facade opens the ack, authenticates it as from the counselor, reports it.
//! let _ack_frame = wire.remove(0);
//! assert_eq!(client_delivery.on_ack(&counselor, id), AckOutcome::Delivered);
//! assert_eq!(client_delivery.poll_event(), Some(DeliveryEvent::Delivered(id)));
//! assert_eq!(client_delivery.poll_timeout(), None, "nothing left to retransmit");
//!
//! // The whole machine state survives a restart.
//! let saved = counselor_delivery.to_bytes();
//! assert_eq!(Delivery::from_bytes(&saved).unwrap(), counselor_delivery);
//! ```
#![forbid(unsafe_code)]
#![deny(missing_docs)]

pub mod consts;
pub mod delivery;
pub mod driver;

mod address;
mod frame;
mod transport;

pub use address::{Address, AddressError};
pub use confide_wire::FrameId;
pub use delivery::{
    AckOutcome, Delivery, DeliveryChanges, DeliveryEvent, DeliveryStats, IncomingStatus,
    OutboxError, PayloadDigest,
};
pub use frame::{FRAME_KIND_DATA, Frame, FrameEncodeError};
pub use transport::{RelayToken, Transmit, Transport, TransportError};
