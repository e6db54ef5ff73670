//! Helpers of the known-answer tests (`tests/vectors.rs` in each crate): the files under
//! `docs/test-vectors/`, rewritten when `CONFIDE_REGENERATE_VECTORS=1`, and a random source
//! that records its draws (so the files can document the RNG order of spec.md §13).

use std::convert::Infallible;
use std::path::PathBuf;

use chacha20::ChaCha20Rng;
use rand_core::{SeedableRng, TryCryptoRng, TryRng};
use serde_json::Value;

/// The environment variable that makes the vector tests rewrite their files.
pub const REGENERATE_VAR: &str = "CONFIDE_REGENERATE_VECTORS";

/// Whether [`REGENERATE_VAR`] is set to `1`.
#[must_use]
pub fn regenerate_requested() -> bool {
    std::env::var_os(REGENERATE_VAR).is_some_and(|v| v == "1")
}

/// `docs/test-vectors/<relative>`.
#[must_use]
pub fn path(relative: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../docs/test-vectors")
        .join(relative)
}

/// Writes `text` to `path` beside and renames it, so a test reading the file meanwhile never
/// sees half of it.
fn write_atomically(path: &std::path::Path, text: &str) {
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, text).unwrap();
    std::fs::rename(&tmp, path).unwrap();
}

/// Compares `generated` with the JSON file `docs/test-vectors/<relative>` (as values), after
/// rewriting the file (pretty-printed) when [`regenerate_requested`].
pub fn check_json(relative: &str, generated: &Value) {
    let path = path(relative);
    if regenerate_requested() {
        write_atomically(
            &path,
            &(serde_json::to_string_pretty(generated).unwrap() + "\n"),
        );
    }
    let stored = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("{}: {e}; run with {REGENERATE_VAR}=1", path.display()));
    let stored: Value = serde_json::from_str(&stored).unwrap();
    assert!(
        stored == *generated,
        "{} differs from what the code produces now; if the change is intended, regenerate \
         with {REGENERATE_VAR}=1 and review the diff",
        path.display()
    );
}

/// Compares `generated` with the text file `docs/test-vectors/<relative>` byte for byte,
/// after rewriting the file when [`regenerate_requested`].
pub fn check_text(relative: &str, generated: &str) {
    let path = path(relative);
    if regenerate_requested() {
        write_atomically(&path, generated);
    }
    let stored = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("{}: {e}; run with {REGENERATE_VAR}=1", path.display()));
    assert_eq!(
        stored, generated,
        "{relative} no longer matches the code's output"
    );
}

/// `ChaCha20Rng::from_seed(seed)` that records the size of every draw. Every draw of the
/// library is a `fill_bytes`; a word draw would be a departure from spec.md §13 and panics.
#[derive(Debug)]
pub struct RecordingRng {
    /// The name the vector files give this random source.
    pub name: &'static str,
    rng: ChaCha20Rng,
    /// The size of every draw so far, in order.
    pub draws: Vec<usize>,
}

impl RecordingRng {
    /// A recording source called `name`, seeded with `seed`.
    #[must_use]
    pub fn new(name: &'static str, seed: [u8; 32]) -> Self {
        Self {
            name,
            rng: ChaCha20Rng::from_seed(seed),
            draws: Vec::new(),
        }
    }
}

impl TryRng for RecordingRng {
    type Error = Infallible;
    fn try_next_u32(&mut self) -> Result<u32, Infallible> {
        panic!("the library draws bytes only (spec.md §13)")
    }
    fn try_next_u64(&mut self) -> Result<u64, Infallible> {
        panic!("the library draws bytes only (spec.md §13)")
    }
    fn try_fill_bytes(&mut self, dst: &mut [u8]) -> Result<(), Infallible> {
        self.draws.push(dst.len());
        self.rng.try_fill_bytes(dst)
    }
}

impl TryCryptoRng for RecordingRng {}
