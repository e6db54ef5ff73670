//! Runnable examples live in src/bin.
#![forbid(unsafe_code)]
