//! Settings shared by every benchmark file.

use std::time::Duration;

use criterion::{Criterion, measurement::Measurement};

/// CI mode when `CONFIDE_BENCH_QUICK` is set: 0.3 s warm-up, 1 s measurement, 10 samples,
/// 10,000 bootstrap resamples, no plots (docs/benchmarks.md). Command-line flags, applied
/// after this, still override it.
pub(crate) fn ci_mode<M: Measurement>(c: Criterion<M>) -> Criterion<M> {
    if std::env::var_os("CONFIDE_BENCH_QUICK").is_some() {
        c.warm_up_time(Duration::from_millis(300))
            .measurement_time(Duration::from_secs(1))
            .sample_size(10)
            .nresamples(10_000)
            .without_plots()
    } else {
        c
    }
}
