//! Reads criterion's results and renders the comparison table (see the crate documentation
//! for the naming convention and `docs/benchmarks.md` for the targets file).

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

/// Function id of our own implementation.
pub const CONFIDE: &str = "confide";
/// Function id of the floor (raw primitives doing the same work).
pub const FLOOR: &str = "floor";
/// Function id of vodozemac doing the same operation.
pub const VODOZEMAC: &str = "vodozemac";
/// Function id of the post-quantum share of a Confide operation.
pub const PQ_PART: &str = "pq_part";
/// Parameter given to the derived row "operation minus its post-quantum part".
pub const MINUS_PQ: &str = "minus_pq";

/// One benchmark's median.
#[derive(Debug, Clone, PartialEq)]
pub struct Estimate {
    /// Criterion group id, `<area>/<operation>`.
    pub group: String,
    /// Function id (`confide`, `floor`, `vodozemac`, `pq_part`, or a component name).
    pub function: String,
    /// Parameter (for example `1KiB`), if any.
    pub parameter: Option<String>,
    /// Median time per iteration in nanoseconds.
    pub median_ns: f64,
}

impl Estimate {
    /// Builds an estimate.
    #[must_use]
    pub fn new(group: &str, function: &str, parameter: Option<&str>, median_ns: f64) -> Self {
        Self {
            group: group.to_owned(),
            function: function.to_owned(),
            parameter: parameter.map(str::to_owned),
            median_ns,
        }
    }
}

/// Why reading results or targets failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TableError {
    /// A file or directory could not be read.
    #[error("cannot read {path}: {source}")]
    Io {
        /// The path.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// A criterion JSON file did not have the expected shape.
    #[error("unexpected content in {path}: {what}")]
    Format {
        /// The path.
        path: PathBuf,
        /// What was missing.
        what: &'static str,
    },
    /// A line of the targets file is malformed.
    #[error("targets line {line}: {what}")]
    Target {
        /// 1-based line number.
        line: usize,
        /// What is wrong.
        what: &'static str,
    },
}

/// Walks `criterion_dir` and reads every `<...>/new/{benchmark,estimates}.json` pair.
pub fn collect(criterion_dir: &Path) -> Result<Vec<Estimate>, TableError> {
    let mut out = Vec::new();
    walk(criterion_dir, &mut out)?;
    Ok(out)
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> TableError + '_ {
    move |source| TableError::Io {
        path: path.to_owned(),
        source,
    }
}

fn walk(dir: &Path, out: &mut Vec<Estimate>) -> Result<(), TableError> {
    let entries = std::fs::read_dir(dir).map_err(io(dir))?;
    for entry in entries {
        let path = entry.map_err(io(dir))?.path();
        if !path.is_dir() {
            continue;
        }
        if path.file_name().is_some_and(|n| n == "new") {
            let bench = path.join("benchmark.json");
            let est = path.join("estimates.json");
            if bench.is_file() && est.is_file() {
                out.push(read_pair(&bench, &est)?);
            }
        } else {
            walk(&path, out)?;
        }
    }
    Ok(())
}

fn read_json(path: &Path) -> Result<serde_json::Value, TableError> {
    let text = std::fs::read_to_string(path).map_err(io(path))?;
    serde_json::from_str(&text).map_err(|_| TableError::Format {
        path: path.to_owned(),
        what: "not JSON",
    })
}

fn read_pair(bench: &Path, est: &Path) -> Result<Estimate, TableError> {
    let b = read_json(bench)?;
    let e = read_json(est)?;
    let format = |path: &Path, what| TableError::Format {
        path: path.to_owned(),
        what,
    };
    let group = b
        .get("group_id")
        .and_then(serde_json::Value::as_str)
        .ok_or_else(|| format(bench, "group_id"))?;
    let function = b
        .get("function_id")
        .and_then(serde_json::Value::as_str)
        .unwrap_or("");
    let parameter = b.get("value_str").and_then(serde_json::Value::as_str);
    let median_ns = e
        .get("median")
        .and_then(|m| m.get("point_estimate"))
        .and_then(serde_json::Value::as_f64)
        .ok_or_else(|| format(est, "median.point_estimate"))?;
    Ok(Estimate::new(group, function, parameter, median_ns))
}

/// Reference word of an absolute time target.
pub const TIME: &str = "time";

/// What a target compares against.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Reference {
    /// The floor of the same row.
    Floor,
    /// vodozemac in the same row.
    Vodozemac,
    /// Another function id measured in the same group and parameter (for example
    /// `session_only`): a reference that has no column of its own.
    Function(String),
    /// No reference: the Confide median itself must stay under the limit.
    Time,
}

/// One line of the targets file: rows matching `group` and `parameter` must satisfy
/// `confide <= limit * reference`, or `confide <= limit` for [`Reference::Time`].
#[derive(Debug, Clone, PartialEq)]
pub struct Target {
    /// Group id, or a prefix followed by `*`.
    pub group: String,
    /// Parameter, `-` for none, `*` for any.
    pub parameter: String,
    /// What the ratio is taken against.
    pub reference: Reference,
    /// Largest allowed ratio, or for [`Reference::Time`] the largest median in nanoseconds.
    pub limit: f64,
}

impl Target {
    fn matches(&self, group: &str, parameter: Option<&str>) -> bool {
        let group_ok = match self.group.strip_suffix('*') {
            Some(prefix) => group.starts_with(prefix),
            None => self.group == group,
        };
        let parameter_ok = match (self.parameter.as_str(), parameter) {
            ("*", _) => true,
            ("-", None) => true,
            (p, Some(q)) => p == q,
            _ => false,
        };
        group_ok && parameter_ok
    }

    fn describe(&self) -> String {
        let name = match &self.reference {
            Reference::Floor => FLOOR,
            Reference::Vodozemac => VODOZEMAC,
            Reference::Function(f) => f.as_str(),
            Reference::Time => return format!("<= {}", format_time(self.limit)),
        };
        format!("<= {:.2}x {name}", self.limit)
    }
}

/// Parses a time limit: a number with the unit `ns`, `us`, `ms` or `s` (`10ms`), in
/// nanoseconds.
fn parse_time(text: &str) -> Option<f64> {
    let split = text.find(|c: char| !(c.is_ascii_digit() || c == '.'))?;
    let (number, unit) = text.split_at(split);
    let scale = match unit {
        "ns" => 1.0,
        "us" => 1e3,
        "ms" => 1e6,
        "s" => 1e9,
        _ => return None,
    };
    number.parse::<f64>().ok().map(|n| n * scale)
}

/// A function id usable as a reference: lower-case letters, digits and `_`, not `confide`.
fn is_function_id(word: &str) -> bool {
    !word.is_empty()
        && word != CONFIDE
        && word
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
}

/// Parses the targets file: one target per line, `group parameter reference limit`,
/// whitespace separated; `#` starts a comment. `reference` is `floor`, `vodozemac`, another
/// function id of the same group (`limit` is then a ratio), or `time` (`limit` is then a
/// time such as `10ms`).
pub fn parse_targets(text: &str) -> Result<Vec<Target>, TableError> {
    let mut out = Vec::new();
    for (i, raw) in text.lines().enumerate() {
        let line_no = i.saturating_add(1);
        let line = raw.split('#').next().unwrap_or("").trim();
        if line.is_empty() {
            continue;
        }
        let fields: Vec<&str> = line.split_whitespace().collect();
        let [group, parameter, reference, limit] = fields.as_slice() else {
            return Err(TableError::Target {
                line: line_no,
                what: "expected four fields: group parameter reference limit",
            });
        };
        let reference = match *reference {
            FLOOR => Reference::Floor,
            VODOZEMAC => Reference::Vodozemac,
            TIME => Reference::Time,
            f if is_function_id(f) => Reference::Function(f.to_owned()),
            _ => {
                return Err(TableError::Target {
                    line: line_no,
                    what: "reference must be `floor`, `vodozemac`, `time` or a function id",
                });
            }
        };
        let limit = if reference == Reference::Time {
            parse_time(limit).ok_or(TableError::Target {
                line: line_no,
                what: "a time limit is a number and a unit: ns, us, ms or s",
            })?
        } else {
            limit.parse().map_err(|_| TableError::Target {
                line: line_no,
                what: "the ratio limit is not a number",
            })?
        };
        if !(limit.is_finite() && limit > 0.0) {
            return Err(TableError::Target {
                line: line_no,
                what: "the limit must be positive",
            });
        }
        out.push(Target {
            group: (*group).to_owned(),
            parameter: (*parameter).to_owned(),
            reference,
            limit,
        });
    }
    Ok(out)
}

/// Formats nanoseconds with three significant digits.
#[must_use]
pub fn format_time(ns: f64) -> String {
    let (value, unit) = if ns >= 1e6 {
        (ns / 1e6, "ms")
    } else if ns >= 1e3 {
        (ns / 1e3, "us")
    } else {
        (ns, "ns")
    };
    if value >= 100.0 {
        format!("{value:.0} {unit}")
    } else if value >= 10.0 {
        format!("{value:.1} {unit}")
    } else {
        format!("{value:.2} {unit}")
    }
}

/// Orders parameters that look like sizes (`64B`, `1KiB`, `64KiB`, `2MiB`) by size, plain
/// numbers by value, others by name, and no parameter first.
/// Sort key of a parameter: kind (none, size, other), size in bytes, name.
type ParameterKey = (u8, u64, String);

fn parameter_key(p: Option<&str>) -> ParameterKey {
    let Some(p) = p else {
        return (0, 0, String::new());
    };
    let split = p.find(|c: char| !c.is_ascii_digit()).unwrap_or(p.len());
    let (digits, unit) = p.split_at(split);
    let scale = match unit {
        // A plain number (a count, such as conversations) sorts by value too.
        "" | "B" => Some(1u64),
        "KiB" => Some(1024),
        "MiB" => Some(1024 * 1024),
        _ => None,
    };
    match (digits.parse::<u64>(), scale) {
        (Ok(n), Some(s)) => (1, n.saturating_mul(s), String::new()),
        _ => (2, 0, p.to_owned()),
    }
}

struct Row {
    confide: Option<f64>,
    floor: Option<f64>,
    vodozemac: Option<f64>,
    pq_part: Option<f64>,
    /// Other function ids of the group (extra references such as `session_only`).
    others: BTreeMap<String, f64>,
}

fn ratio(a: f64, b: Option<f64>) -> (String, Option<f64>) {
    match b {
        Some(b) if b > 0.0 => {
            let r = a / b;
            (format!("{r:.2}x"), Some(r))
        }
        _ => ("-".to_owned(), None),
    }
}

fn opt_time(t: Option<f64>) -> String {
    t.map_or_else(|| "-".to_owned(), format_time)
}

#[allow(clippy::too_many_arguments)]
fn push_row(
    md: &mut String,
    targets: &[Target],
    group: &str,
    parameter: Option<&str>,
    confide: f64,
    floor: Option<f64>,
    vodozemac: Option<f64>,
    others: &BTreeMap<String, f64>,
) {
    let (floor_ratio_text, floor_ratio) = ratio(confide, floor);
    let (vz_ratio_text, vz_ratio) = ratio(confide, vodozemac);
    let mut descriptions = Vec::new();
    let mut verdict: Option<bool> = None;
    for t in targets.iter().filter(|t| t.matches(group, parameter)) {
        // The measured value compared with the limit, and how to show it when the table has
        // no column for it.
        let (measured, shown) = match &t.reference {
            Reference::Floor => (floor_ratio, None),
            Reference::Vodozemac => (vz_ratio, None),
            Reference::Function(f) => {
                let (text, r) = ratio(confide, others.get(f).copied());
                (r, Some(text))
            }
            Reference::Time => (Some(confide), None),
        };
        if let Some(m) = measured {
            descriptions.push(match shown {
                Some(text) => format!("{} (is {text})", t.describe()),
                None => t.describe(),
            });
            let ok = m <= t.limit;
            verdict = Some(verdict.unwrap_or(true) && ok);
        }
    }
    let name = match parameter {
        Some(p) => format!("{group} {p}"),
        None => group.to_owned(),
    };
    let target = if descriptions.is_empty() {
        "-".to_owned()
    } else {
        descriptions.join("; ")
    };
    let result = match verdict {
        None => "-",
        Some(true) => "pass",
        Some(false) => "FAIL",
    };
    // Writing to a String cannot fail.
    let _ = writeln!(
        md,
        "| {name} | {} | {} | {floor_ratio_text} | {} | {vz_ratio_text} | {target} | {result} |",
        format_time(confide),
        opt_time(floor),
        opt_time(vodozemac),
    );
}

/// Renders the comparison table (rows with a `confide` function, plus a derived "minus PQ"
/// row wherever a `pq_part` was measured) and the components table (all other groups).
#[must_use]
pub fn render(estimates: &[Estimate], targets: &[Target]) -> String {
    type Key = (String, ParameterKey, Option<String>);
    let mut rows: BTreeMap<Key, Row> = BTreeMap::new();
    let mut components: BTreeMap<Key, Vec<(String, f64)>> = BTreeMap::new();
    let mut groups_with_confide = std::collections::BTreeSet::new();
    for e in estimates {
        if e.function == CONFIDE {
            groups_with_confide.insert(e.group.clone());
        }
    }
    for e in estimates {
        let key = (
            e.group.clone(),
            parameter_key(e.parameter.as_deref()),
            e.parameter.clone(),
        );
        if groups_with_confide.contains(&e.group) {
            let row = rows.entry(key.clone()).or_insert(Row {
                confide: None,
                floor: None,
                vodozemac: None,
                pq_part: None,
                others: BTreeMap::new(),
            });
            let slot = match e.function.as_str() {
                CONFIDE => &mut row.confide,
                FLOOR => &mut row.floor,
                VODOZEMAC => &mut row.vodozemac,
                PQ_PART => &mut row.pq_part,
                // Any other function id (e.g. `session_only`, `policy_only`) is an extra
                // reference measured in the same run: list it with the components.
                _ => {
                    row.others.insert(e.function.clone(), e.median_ns);
                    components
                        .entry(key)
                        .or_default()
                        .push((e.function.clone(), e.median_ns));
                    continue;
                }
            };
            *slot = Some(e.median_ns);
        } else {
            components
                .entry(key)
                .or_default()
                .push((e.function.clone(), e.median_ns));
        }
    }

    let mut md = String::new();
    md.push_str(
        "| operation | Confide | floor | Confide / floor | vodozemac | Confide / vodozemac | target | result |\n\
         |---|---:|---:|---:|---:|---:|---|---|\n",
    );
    for ((group, _, parameter), row) in &rows {
        let Some(confide) = row.confide else {
            continue;
        };
        push_row(
            &mut md,
            targets,
            group,
            parameter.as_deref(),
            confide,
            row.floor,
            row.vodozemac,
            &row.others,
        );
        if let Some(pq) = row.pq_part {
            push_row(
                &mut md,
                targets,
                group,
                Some(MINUS_PQ),
                confide - pq,
                row.floor.map(|f| f - pq),
                row.vodozemac,
                &BTreeMap::new(),
            );
        }
    }
    if !components.is_empty() {
        md.push_str("\n| component | median |\n|---|---:|\n");
        let mut flat: Vec<(String, ParameterKey, String, f64)> = Vec::new();
        for ((group, _, parameter), fns) in &components {
            for (function, ns) in fns {
                let name = match parameter {
                    Some(p) => format!("{group}/{function} {p}"),
                    None => format!("{group}/{function}"),
                };
                flat.push((
                    format!("{group}/{function}"),
                    parameter_key(parameter.as_deref()),
                    name,
                    *ns,
                ));
            }
        }
        flat.sort_by(|a, b| (&a.0, &a.1).cmp(&(&b.0, &b.1)));
        for (_, _, name, ns) in flat {
            let _ = writeln!(md, "| {name} | {} |", format_time(ns));
        }
    }
    md
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::indexing_slicing)]
    use super::*;

    #[test]
    fn targets_parse_and_reject() {
        let t = parse_targets(
            "# comment\nsession/chain_encrypt 1KiB floor 1.5\nsession/* * vodozemac 1 # all\n",
        )
        .unwrap();
        assert_eq!(t.len(), 2);
        assert!(t[1].matches("session/ping_pong", None));
        assert!(t[1].matches("session/chain_encrypt", Some("64B")));
        assert!(!t[0].matches("session/chain_encrypt", Some("64B")));
        assert!(!t[0].matches("session/chain_decrypt", Some("1KiB")));
        assert!(parse_targets("a b floor").is_err());
        assert!(parse_targets("a b Ceiling! 1").is_err());
        assert!(parse_targets("a b floor -1").is_err());
        assert!(parse_targets("a b floor x").is_err());
        assert!(parse_targets("a b confide 1").is_err());
        assert!(parse_targets("a b time 10").is_err());
        assert!(parse_targets("a b time 10 ms").is_err());
        let t = parse_targets("a - session_only 3\nb 1000 time 10ms\nc * time 1.5us").unwrap();
        assert_eq!(
            t[0].reference,
            Reference::Function("session_only".to_owned())
        );
        assert_eq!((t[1].reference.clone(), t[1].limit), (Reference::Time, 1e7));
        assert_eq!(t[2].limit, 1_500.0);
    }

    #[test]
    fn function_and_time_targets_verdicts() {
        let e = vec![
            Estimate::new("endpoint/roundtrip_1k", "confide", Some("1KiB"), 900_000.0),
            Estimate::new(
                "endpoint/roundtrip_1k",
                "session_only",
                Some("1KiB"),
                6_000.0,
            ),
            Estimate::new(
                "endpoint/persist_load",
                "confide",
                Some("1000"),
                9_000_000.0,
            ),
            Estimate::new(
                "endpoint/persist_load",
                "confide",
                Some("100"),
                11_000_000.0,
            ),
        ];
        let t = parse_targets(
            "endpoint/roundtrip_1k 1KiB session_only 3\nendpoint/persist_load * time 10ms\n",
        )
        .unwrap();
        let md = render(&e, &t);
        let row = |needle: &str| md.lines().find(|l| l.contains(needle)).unwrap();
        assert!(
            row("roundtrip_1k 1KiB |").ends_with("| <= 3.00x session_only (is 150.00x) | FAIL |"),
            "{md}"
        );
        assert!(
            row("persist_load 1000 |").ends_with("| <= 10.0 ms | pass |"),
            "{md}"
        );
        assert!(
            row("persist_load 100 |").ends_with("| <= 10.0 ms | FAIL |"),
            "{md}"
        );
        // Plain numbers sort by value.
        let hundred = md.find("persist_load 100 |").unwrap();
        let thousand = md.find("persist_load 1000 |").unwrap();
        assert!(hundred < thousand);
        // The extra reference is still listed with the components.
        assert!(md.contains("| endpoint/roundtrip_1k/session_only 1KiB | 6.00 us |"));
    }

    #[test]
    fn rows_ratios_and_verdicts() {
        let e = vec![
            Estimate::new("session/chain_encrypt", "confide", Some("64KiB"), 200_000.0),
            Estimate::new("session/chain_encrypt", "floor", Some("64KiB"), 100_000.0),
            Estimate::new("session/chain_encrypt", "confide", Some("64B"), 2_000.0),
            Estimate::new("session/chain_encrypt", "floor", Some("64B"), 1_000.0),
            Estimate::new("session/chain_encrypt", "vodozemac", Some("64B"), 4_000.0),
            Estimate::new("session/setup_full", "confide", None, 900_000.0),
            Estimate::new("session/setup_full", "pq_part", None, 100_000.0),
            Estimate::new("session/setup_full", "vodozemac", None, 850_000.0),
            Estimate::new("primitive", "x25519_dh", None, 64_000.0),
            Estimate::new("primitive", "aead_seal", Some("256B"), 390.0),
        ];
        let t = parse_targets("session/chain_encrypt * floor 1.5\nsession/* * vodozemac 1.0\n")
            .unwrap();
        let md = render(&e, &t);
        let lines: Vec<&str> = md.lines().collect();
        // Sizes are ordered by size, not by name.
        let small = lines.iter().position(|l| l.contains("64B |")).unwrap();
        let large = lines.iter().position(|l| l.contains("64KiB |")).unwrap();
        assert!(small < large);
        assert!(lines[small].contains("| 2.00x |") && lines[small].contains("| 0.50x |"));
        assert!(lines[small].ends_with("FAIL |"), "{}", lines[small]);
        assert!(lines[large].contains("| 2.00x |") && lines[large].ends_with("FAIL |"));
        let full = lines.iter().find(|l| l.contains("setup_full |")).unwrap();
        assert!(full.ends_with("FAIL |"), "{full}");
        let minus = lines.iter().find(|l| l.contains("minus_pq")).unwrap();
        assert!(
            minus.contains("| 800 us |") && minus.ends_with("pass |"),
            "{minus}"
        );
        assert!(md.contains("| primitive/x25519_dh | 64.0 us |"));
        assert!(md.contains("| primitive/aead_seal 256B | 390 ns |"));
    }

    #[test]
    fn time_formatting() {
        assert_eq!(format_time(390.4), "390 ns");
        assert_eq!(format_time(1_234.0), "1.23 us");
        assert_eq!(format_time(64_000.0), "64.0 us");
        assert_eq!(format_time(1_880_000.0), "1.88 ms");
    }

    #[test]
    fn collects_criterion_layout() {
        let dir = std::env::temp_dir().join(format!("confide-bench-table-{}", std::process::id()));
        let new = dir.join("session_ping_pong").join("confide").join("new");
        std::fs::create_dir_all(&new).unwrap();
        std::fs::write(
            new.join("benchmark.json"),
            r#"{"group_id":"session/ping_pong","function_id":"confide","value_str":null}"#,
        )
        .unwrap();
        std::fs::write(
            new.join("estimates.json"),
            r#"{"median":{"point_estimate":321000.0}}"#,
        )
        .unwrap();
        let base = dir.join("session_ping_pong").join("confide").join("base");
        std::fs::create_dir_all(&base).unwrap();
        std::fs::write(base.join("estimates.json"), "{}").unwrap();
        let got = collect(&dir).unwrap();
        std::fs::remove_dir_all(&dir).unwrap();
        assert_eq!(
            got,
            vec![Estimate::new(
                "session/ping_pong",
                "confide",
                None,
                321_000.0
            )]
        );
    }
}
