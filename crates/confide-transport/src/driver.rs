//! The one run-loop contract of Confide: what a driver (an app's event loop, a real transport,
//! or a test simulation) does with a sans-IO endpoint.
//!
//! # The contract
//!
//! A [`SansIoEndpoint`] does no I/O, reads no clock and draws no randomness of its own. It
//! takes one kind of input, [`SansIoEndpoint::handle_input`] with an [`Input`] (a received
//! frame or the time), plus its own commands (such as "send a message", each taking
//! `(rng, now, ...)`), and produces outputs through one poller, [`SansIoEndpoint::poll_output`],
//! in the style of str0m: a transmit, an event for the app, or finally the next deadline. The
//! facade's `confide::Endpoint` implements it (its `Input` and `Output` are these types), and
//! so does every test endpoint; there is no other run loop.
//!
//! # The run loop, step by step
//!
//! 1. Issue any commands to the endpoint.
//! 2. Call `poll_output` until it returns [`Output::Timeout`]: hand every [`Output::Transmit`]
//!    to the transport (with its relay token), every [`Output::Event`] to the app, and
//!    remember the deadline from `Timeout` (`None`: no timer).
//! 3. Wait until a frame arrives, a command comes from the user, or the deadline passes.
//! 4. Read the clock into `now`. For each received frame call
//!    `handle_input(rng, Input::Receive { bytes, now })`, then step 2.
//! 5. If the deadline is at or before `now`, call `handle_input(rng, Input::Timeout { now })`,
//!    then step 2. Calling it early is harmless (a no-op); after a long sleep one call does all
//!    that is due.
//! 6. Go to step 1.
//!
//! The unpublished `confide-sim` crate holds two drivers written against this contract: a
//! `Driver` that does steps 2, 4 and 5 for one instant over any [`Transport`](crate::Transport)
//! (the app does the waiting), and a `Simulation` that does the same for many endpoints over a
//! simulated network with a virtual clock that jumps to the next deadline, so tests run days
//! of traffic in milliseconds.

use core::fmt;

use confide_wire::{CryptoRng, Timestamp};

use crate::{FrameId, Transmit};

/// An input to [`SansIoEndpoint::handle_input`].
#[derive(Clone, Copy)]
#[non_exhaustive]
pub enum Input<'a> {
    /// Frame bytes the transport received for this endpoint's mailbox, at `now`.
    Receive {
        /// The frame as received.
        bytes: &'a [u8],
        /// When it arrived.
        now: Timestamp,
    },
    /// The time is `now`: do whatever is due. Early (spurious) timeouts do nothing.
    Timeout {
        /// The current time.
        now: Timestamp,
    },
    /// The relay confirmed that it durably stored the frame `id` (a transport-level receipt,
    /// `docs/transport.md` §3.8): retransmissions of that frame are held back for
    /// [`RELAY_RECEIPT_HOLD`](crate::consts::RELAY_RECEIPT_HOLD). It is no end-to-end
    /// acknowledgement: the message still waits for its recipient's. Receipts for frames
    /// nothing waits on are ignored.
    RelayReceipt {
        /// The frame id the relay named (bytes 2..18 of the frame it stored).
        id: FrameId,
        /// When the receipt arrived.
        now: Timestamp,
    },
    /// The transport connected to a relay that may not hold the frames it confirmed before
    /// (a relay without durable storage, or another relay): every held retransmission becomes
    /// due. A transport that reconnects to the same durable relay need not report it.
    RelayReconnected {
        /// The current time.
        now: Timestamp,
    },
}

impl Input<'_> {
    /// The input's time.
    #[must_use]
    pub const fn now(&self) -> Timestamp {
        match self {
            Self::Receive { now, .. }
            | Self::Timeout { now }
            | Self::RelayReceipt { now, .. }
            | Self::RelayReconnected { now } => *now,
        }
    }
}

impl fmt::Debug for Input<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Receive { bytes, now } => f
                .debug_struct("Receive")
                .field("len", &bytes.len())
                .field("now", now)
                .finish(),
            Self::Timeout { now } => f.debug_struct("Timeout").field("now", now).finish(),
            // A frame id could link a log line to relay records: not printed.
            Self::RelayReceipt { id: _, now } => f
                .debug_struct("RelayReceipt")
                .field("now", now)
                .finish_non_exhaustive(),
            Self::RelayReconnected { now } => f
                .debug_struct("RelayReconnected")
                .field("now", now)
                .finish(),
        }
    }
}

/// One output of [`SansIoEndpoint::poll_output`].
#[derive(Debug)]
#[non_exhaustive]
#[must_use]
pub enum Output<E> {
    /// Frame bytes to hand to the transport.
    Transmit(Transmit),
    /// Something for the app.
    Event(E),
    /// Nothing more to output now. Call `handle_input(rng, Input::Timeout { .. })` at this
    /// time (`None`: no timer is running).
    Timeout(Option<Timestamp>),
}

/// A protocol endpoint that does no I/O; see the [module documentation](self).
pub trait SansIoEndpoint {
    /// What the endpoint reports to its app.
    type Event;

    /// Feeds one input (a received frame, or the time). Afterwards call
    /// [`SansIoEndpoint::poll_output`] until it returns [`Output::Timeout`].
    fn handle_input<R: CryptoRng + ?Sized>(&mut self, rng: &mut R, input: Input<'_>);

    /// The next output. Call until it returns [`Output::Timeout`].
    fn poll_output(&mut self) -> Output<Self::Event>;
}
