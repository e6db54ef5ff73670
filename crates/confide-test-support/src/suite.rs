//! The one-binary integration-test suites: each crate's `tests/suite.rs` declares every other
//! file of `tests/` as a module (`autotests = false`), and calls [`check_every_file_declared`]
//! from a test so that a new file cannot silently never run.

use std::path::Path;

/// Panics naming the first `tests/*.rs` file of the crate at `manifest_dir` that `suite`
/// (the text of its `tests/suite.rs`) does not declare with a `mod <file>;` line. Files in
/// `own_binary` are `[[test]]` targets of their own and are skipped.
///
/// # Panics
/// On an undeclared file, or if the `tests` directory cannot be read.
pub fn check_every_file_declared(manifest_dir: &str, suite: &str, own_binary: &[&str]) {
    let dir = Path::new(manifest_dir).join("tests");
    let entries =
        std::fs::read_dir(&dir).unwrap_or_else(|e| panic!("cannot read {}: {e}", dir.display()));
    for entry in entries {
        let path = entry
            .unwrap_or_else(|e| panic!("cannot read {}: {e}", dir.display()))
            .path();
        if path.extension().is_none_or(|e| e != "rs") {
            continue;
        }
        let Some(stem) = path.file_stem().and_then(|s| s.to_str()) else {
            continue;
        };
        if stem != "suite" && !own_binary.contains(&stem) {
            assert!(
                suite.contains(&format!("\nmod {stem};\n")),
                "tests/{stem}.rs is not a module of tests/suite.rs"
            );
        }
    }
}
