//! One test binary for the crate's integration tests: each file beside this one is a
//! module here (`autotests = false` in Cargo.toml), so the test harness, the shared
//! fixtures and the generic code they instantiate are compiled and linked once instead of
//! once per file. `cargo test -p confide-store --test suite <file>::` runs one file's tests.
//! `every_test_file_is_a_module` below fails if a new file is not listed.
#![allow(clippy::unwrap_used)]

mod common;
mod cost;
mod deletion;
mod fuzz_corpus;
mod transcript;
mod vectors;

/// Files of `tests/` built as their own binaries (each a `[[test]]` of Cargo.toml).
const OWN_BINARY: &[&str] = &[];

/// A file in `tests/` that is not declared above would silently never run.
#[test]
fn every_test_file_is_a_module() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests");
    let suite = include_str!("suite.rs");
    for entry in std::fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "rs") {
            let stem = path.file_stem().unwrap().to_str().unwrap();
            if stem != "suite" && !OWN_BINARY.contains(&stem) {
                assert!(
                    suite.contains(&format!("\nmod {stem};\n")),
                    "tests/{stem}.rs is not a module of tests/suite.rs"
                );
            }
        }
    }
}
