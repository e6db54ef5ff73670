//! Confide's reference relay: what a service runs so that apps can talk.
//!
//! It serves, over one versioned binary protocol ([`protocol`], specified byte for byte in
//! `docs/relay.md`) on TCP (length-prefixed messages) and on WebSocket (one binary message per
//! protocol message, for browsers and mobile stacks; TLS terminates at a reverse proxy):
//!
//! * **mailboxes**: store-and-forward of opaque transport frames, at most one copy per
//!   (mailbox, frame id), a relay receipt (`Stored`) once the frame is committed, delivery on
//!   authentication and push while the owner is connected, deletion when the owner confirms;
//!   an identical retransmission of a confirmed frame is acknowledged but not delivered again;
//! * **authenticated owners**: a mailbox belongs to an Ed25519 key; reading, confirming,
//!   uploading bundles and asking for a certificate need a signature over the connection's
//!   challenge. Sending needs nothing but the destination's delivery token, so senders use a
//!   separate connection that never authenticates;
//! * a **prekey directory**: one-time bundles each handed out once (deleted in the statement
//!   that reads them), then the last-resort bundle; a count the owner polls to refill;
//! * a **certificate issuer**: short-lived anonymous client certificates for an owner's
//!   mailbox address; counselor and bot certificates only from the operator's command line.
//! * **wake-ups** ([`wake`]): a connected owner is pushed each new frame; with PostgreSQL,
//!   relay processes sharing a database wake each other with `LISTEN`/`NOTIFY` on a hashed
//!   mailbox key, so an owner may connect to any of them;
//! * a **push hook** ([`push`]): an owner without a connection is woken through its
//!   registered push gateway with a request that carries nothing about the mail.
//! * a **blob store** for encrypted attachments (`confide-attachment`): an owner uploads a
//!   blob in pieces, each appended at exactly the stored length and receipted once durable,
//!   so a dropped upload resumes where the relay's copy ends; anyone with the random 128-bit
//!   blob id downloads a complete blob, streamed in pieces; anyone with the delete token
//!   (derived from the attachment key) deletes it; per-owner quotas, and retention.
//!
//! Storage is behind [`store::RelayStore`]; [`store::SqliteRelayStore`] is the embedded
//! default, and the `postgres` feature adds `postgres::PostgresRelayStore`. Every limit is a named constant in [`consts`] with its reason. [`client`] is a tokio
//! client with reconnect and backoff whose events feed a sans-IO `confide` endpoint.
//!
//! ```no_run
//! # async fn run() -> Result<(), Box<dyn std::error::Error>> {
//! use std::sync::Arc;
//! use confide_relay::{Relay, RelayConfig, store::SqliteRelayStore};
//! let store = Arc::new(SqliteRelayStore::open("relay.sqlite")?);
//! let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
//! println!("listening on {}", listener.local_addr()?);
//! Relay::new(store, RelayConfig::default()).serve(listener).await;
//! # Ok(())
//! # }
//! ```
#![forbid(unsafe_code)]
#![deny(missing_docs)]
#![cfg_attr(
    not(test),
    deny(
        clippy::unwrap_used,
        clippy::expect_used,
        clippy::panic,
        clippy::indexing_slicing
    )
)]

mod admission;
mod bucket;
pub mod client;
pub mod consts;
mod framing;
pub mod issuer;
#[cfg(feature = "postgres")]
pub mod postgres;
pub mod protocol;
pub mod push;
pub mod server;
pub mod store;
pub mod wake;

pub use server::{Limits, Relay, RelayConfig, StatsSnapshot, wall_clock};
