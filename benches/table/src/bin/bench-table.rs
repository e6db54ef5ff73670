//! Prints the benchmark table of `docs/benchmarks.md` from criterion's latest results.
//!
//! ```text
//! cargo run -p confide-bench-table [-- --criterion-dir DIR] [--targets FILE]
//! ```
//!
//! By default results are read from `$CARGO_TARGET_DIR/criterion` (or `target/criterion` of
//! the workspace) and targets from `benches/targets.txt`. Exits with status 1 if any target
//! is missed, 2 on a usage or read error.
#![forbid(unsafe_code)]
#![deny(missing_docs)]

use std::path::PathBuf;
use std::process::ExitCode;

use confide_bench_table::table::{collect, parse_targets, render};

fn default_criterion_dir() -> PathBuf {
    let target = std::env::var_os("CARGO_TARGET_DIR").map_or_else(
        || {
            PathBuf::from(env!("CARGO_MANIFEST_DIR"))
                .join("../..")
                .join("target")
        },
        PathBuf::from,
    );
    target.join("criterion")
}

fn run() -> Result<bool, String> {
    let mut criterion_dir = default_criterion_dir();
    let mut targets_file = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../targets.txt");
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--criterion-dir" => {
                criterion_dir = args.next().ok_or("--criterion-dir needs a path")?.into();
            }
            "--targets" => {
                targets_file = args.next().ok_or("--targets needs a path")?.into();
            }
            "-h" | "--help" => {
                println!("usage: bench-table [--criterion-dir DIR] [--targets FILE]");
                return Ok(true);
            }
            other => return Err(format!("unknown argument {other}")),
        }
    }
    let targets_text = std::fs::read_to_string(&targets_file)
        .map_err(|e| format!("cannot read {}: {e}", targets_file.display()))?;
    let targets = parse_targets(&targets_text).map_err(|e| e.to_string())?;
    let estimates = collect(&criterion_dir).map_err(|e| e.to_string())?;
    if estimates.is_empty() {
        return Err(format!("no results under {}", criterion_dir.display()));
    }
    let table = render(&estimates, &targets);
    print!("{table}");
    Ok(!table.contains("| FAIL |"))
}

fn main() -> ExitCode {
    match run() {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::from(1),
        Err(e) => {
            eprintln!("bench-table: {e}");
            ExitCode::from(2)
        }
    }
}
