//! Fixtures shared by Confide's tests, benchmarks and fuzz targets (never published), in the
//! manner of rustls's `rustls-test`:
//!
//! * [`service`]: a certificate service and endpoints built on it;
//! * [`sealed_fixture`]: a service, sender and recipient built from constant seeds;
//! * [`messenger`]: a minimal endpoint over the transport's `Delivery`;
//! * [`fuzzing`]: one check per fuzz target, called by the target and by the corpus replay;
//! * [`corpus`] and [`vectors`]: the fuzz seed corpora and the known-answer files.
//!
//! This is test code: a failed setup step or a violated property panics, which is how a test
//! fails, so the workspace's lints against `unwrap`, `expect`, `panic` and indexing are off
//! here. Nothing in it may be used by a library crate.
#![forbid(unsafe_code)]
#![deny(missing_docs)]
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

pub mod corpus;
pub mod fuzzing;
pub mod messenger;
pub mod sealed_fixture;
pub mod service;
pub mod suite;
pub mod vectors;
