//! One test binary for the crate's integration tests: each file beside this one is a
//! module here (`autotests = false` in Cargo.toml), so the test harness, the shared
//! fixtures and the generic code they instantiate are compiled and linked once instead of
//! once per file. `cargo test -p confide-relay --test suite <file>::` runs one file's tests.
//! `every_test_file_is_a_module` below fails if a new file is not listed.
// The shared `common` modules rely on this crate-level allowance.
#![allow(clippy::unwrap_used)]

mod blobs;
mod codec;
mod common;
mod connection_limits;
mod endpoints;
mod fuzz_corpus;
mod push;
mod relay;
mod scale_out;
mod store;
mod websocket;

/// Files of `tests/` built as their own binaries (each a `[[test]]` of Cargo.toml).
const OWN_BINARY: &[&str] = &[];

/// A file in `tests/` that is not declared above would silently never run.
#[test]
fn every_test_file_is_a_module() {
    confide_test_support::suite::check_every_file_declared(
        env!("CARGO_MANIFEST_DIR"),
        include_str!("suite.rs"),
        OWN_BINARY,
    );
}
