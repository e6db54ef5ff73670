//! Criterion benchmarks for Confide, and the `bench-table` tool that turns their results into
//! the markdown table of `docs/benchmarks.md`.
//!
//! The benchmarks themselves live in `benches/benches/`. Every benchmark follows one naming
//! convention so that [`table`] can lay out any area without knowing it:
//!
//! * criterion group `<area>/<operation>` (for example `session/chain_encrypt`);
//! * function id `confide` (our code), `floor` (raw primitives doing the same cryptographic
//!   work), `vodozemac` (the same operation in vodozemac's Olm, when one exists) and
//!   optionally `pq_part` (the post-quantum share of the Confide operation, reported as an
//!   extra "minus PQ" row);
//! * an optional parameter (for example `1KiB`) for size series;
//! * groups without a `confide` function (such as `primitive`) list floor components.
//!
//! ```
//! use confide_bench_table::table::{Estimate, parse_targets, render};
//!
//! let estimates = vec![
//!     Estimate::new("session/chain_encrypt", "confide", Some("1KiB"), 3_000.0),
//!     Estimate::new("session/chain_encrypt", "floor", Some("1KiB"), 2_500.0),
//! ];
//! let targets = parse_targets("session/chain_encrypt 1KiB floor 1.5").unwrap();
//! let md = render(&estimates, &targets);
//! assert!(md.contains("| session/chain_encrypt 1KiB | 3.00 us | 2.50 us | 1.20x |"));
//! assert!(md.contains("pass"));
//! ```
#![forbid(unsafe_code)]
#![deny(missing_docs)]

pub mod table;
