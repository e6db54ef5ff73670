//! Same-process timing for the benchmarks' interleaved ratio reports (an operation and its
//! floor timed alternately in one process), shared through `#[path]` like `scratch.rs`.

use std::time::{Duration, Instant};

/// Median time per call over `rounds` rounds of `iters` calls.
pub(crate) fn median_time(rounds: usize, iters: u32, mut run: impl FnMut()) -> Duration {
    let mut times: Vec<Duration> = (0..rounds)
        .map(|_| {
            let start = Instant::now();
            for _ in 0..iters {
                run();
            }
            start.elapsed() / iters
        })
        .collect();
    times.sort();
    times[rounds / 2]
}
