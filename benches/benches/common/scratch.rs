//! Database files for the benchmarks that store to disk, in a directory of their own under the
//! temporary directory (`TMPDIR`), removed when dropped. Included with `#[path]` by the
//! benchmark files that use it.

use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};

/// A directory for one benchmark process's database files.
pub(crate) struct ScratchDir(PathBuf);

impl ScratchDir {
    /// Creates `confide-<label>-<pid>` in the temporary directory.
    pub(crate) fn new(label: &str) -> Self {
        let dir = std::env::temp_dir().join(format!("confide-{label}-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        Self(dir)
    }

    /// A path for a new database file, never used before in this run.
    pub(crate) fn fresh_db(&self, name: &str) -> PathBuf {
        static NEXT: AtomicU64 = AtomicU64::new(0);
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        self.0.join(format!("{name}-{n}.db"))
    }
}

impl Drop for ScratchDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}
