//! Test and example harnesses for Confide's sans-IO endpoints (never published).
//!
//! * [`network`]: a deterministic simulated network (loss, duplication, reordering, delay,
//!   partitions, offline periods), seeded so that a run replays exactly;
//! * [`driver`]: a [`Driver`] that runs one
//!   [`SansIoEndpoint`](confide_transport::driver::SansIoEndpoint) over any
//!   [`Transport`](confide_transport::Transport), and a [`Simulation`] harness that runs many
//!   over the simulated network with a virtual clock.
//!
//! The run-loop contract they follow (`Input`, `Output`, `SansIoEndpoint`) belongs to the
//! product and stays in `confide-transport`; this crate holds only what tests, benchmarks and
//! examples use to exercise it, in the manner of str0m's `netem` crate.
#![forbid(unsafe_code)]
#![deny(missing_docs)]

pub mod driver;
pub mod network;

pub use driver::{
    Driver, MAX_FRAMES_PER_RUN, MAX_OUTPUTS_PER_DRAIN, NodeId, RunOutcome, Simulation,
};
pub use network::{LinkConfig, PARTS_PER_MILLION, SimNetwork, SimPort, SimStats};
