//! The fuzz seed corpora under `fuzz/corpus/<target>/`: read them for replay, and rewrite them
//! from deterministic samples when [`REGENERATE_VAR`] is set to `1`.

use std::path::PathBuf;

use confide_crypto::kdf::sha256;

/// The environment variable that makes every `tests/fuzz_corpus.rs` rewrite its seed corpora
/// before replaying them: `CONFIDE_REGENERATE_CORPUS=1 cargo test --test fuzz_corpus`
/// (the same form as `CONFIDE_REGENERATE_VECTORS` for the test vectors).
pub const REGENERATE_VAR: &str = "CONFIDE_REGENERATE_CORPUS";

/// Whether [`REGENERATE_VAR`] is set to `1`.
#[must_use]
pub fn regenerate_requested() -> bool {
    std::env::var_os(REGENERATE_VAR).is_some_and(|v| v == "1")
}

/// The seed corpus directory of the fuzz target `target`.
#[must_use]
pub fn dir(target: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../fuzz/corpus")
        .join(target)
}

/// Replaces the seed corpus of `target` with `seeds`, each in a file named by the first 8 bytes
/// of its SHA-256 (hex), so the same seed always lands in the same file.
pub fn write(target: &str, seeds: &[Vec<u8>]) {
    let dir = dir(target);
    if dir.exists() {
        std::fs::remove_dir_all(&dir).unwrap();
    }
    std::fs::create_dir_all(&dir).unwrap();
    for seed in seeds {
        let digest = sha256(&[seed]);
        let name: String = digest[..8].iter().map(|b| format!("{b:02x}")).collect();
        std::fs::write(dir.join(name), seed).unwrap();
    }
}

/// Every file of the seed corpus of `target`, in file-name order. Panics if it is empty.
#[must_use]
pub fn read(target: &str) -> Vec<Vec<u8>> {
    let dir = dir(target);
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|entry| entry.unwrap().path())
        .filter(|path| path.is_file())
        .collect();
    files.sort();
    assert!(!files.is_empty(), "the corpus of {target} is empty");
    files
        .iter()
        .map(|path| std::fs::read(path).unwrap())
        .collect()
}

/// Runs `check` (the target's function in [`crate::fuzzing`]) on every seed of `target`, and
/// returns the seeds for the caller's own assertions (for example that some of them decode).
pub fn replay(target: &str, check: fn(&[u8])) -> Vec<Vec<u8>> {
    let seeds = read(target);
    for seed in &seeds {
        check(seed);
    }
    seeds
}
