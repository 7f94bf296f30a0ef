//! The parent's output, all in `PEERS_OUT`: `run.tsv` (date, machine,
//! settings), `results.tsv` (one line per round, workload, engine and
//! metric, then the median, min and max of each metric over the rounds)
//! and `results.md` (one row per workload and engine: the medians over the
//! successful rounds, the headline's spread, how many rounds succeeded, and
//! the ratios of the medians to the best peer and to the raw baseline).
//! `benches/update-readme.py` reads `results.md` and `run.tsv`.

use std::collections::BTreeMap;
use std::fs::File;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;

use crate::stats::Stats;
use crate::sys::{loadavg, mem_total};
use crate::workloads::{env_u64, secs};
use crate::Res;

/// One metric a child reports: name, value, unit.
pub type Metric = (String, f64, String);

/// One round of one (workload, engine) pair: its metrics, or why it failed.
pub struct Run {
    pub label: String,
    pub engine: String,
    /// 1-based.
    pub round: u64,
    pub result: Result<Vec<Metric>, String>,
}

/// The rounds of one (workload, engine) pair and each metric's statistics
/// over its successful rounds, in the order the child reports them.
struct Pair<'a> {
    label: &'a str,
    engine: &'a str,
    runs: Vec<&'a Run>,
    metrics: Vec<(&'a str, Stats, &'a str)>,
}

impl Pair<'_> {
    fn ok(&self) -> usize {
        self.runs.iter().filter(|r| r.result.is_ok()).count()
    }

    fn stats(&self, metric: &str) -> Option<Stats> {
        self.metrics.iter().find(|m| m.0 == metric).map(|m| m.1)
    }
}

/// Groups the runs by (workload, engine), sorted by workload label; within
/// a workload the engines keep the order of round 1 (which starts at the
/// first engine).
fn pairs(runs: &[Run]) -> Vec<Pair<'_>> {
    let mut by_pair: BTreeMap<&str, Vec<(&str, Vec<&Run>)>> = BTreeMap::new();
    for run in runs {
        let engines = by_pair.entry(run.label.as_str()).or_default();
        match engines.iter_mut().find(|(e, _)| *e == run.engine) {
            Some((_, rs)) => rs.push(run),
            None => engines.push((run.engine.as_str(), vec![run])),
        }
    }
    let mut out = Vec::new();
    for (label, engines) in by_pair {
        for (engine, runs) in engines {
            let ok: Vec<&Metric> = runs
                .iter()
                .filter_map(|r| r.result.as_ref().ok())
                .flatten()
                .collect();
            let mut metrics: Vec<(&str, Stats, &str)> = Vec::new();
            for (name, _, unit) in ok.iter().copied() {
                if metrics.iter().all(|m| m.0 != name) {
                    let values: Vec<f64> =
                        ok.iter().filter(|m| m.0 == *name).map(|m| m.1).collect();
                    if let Some(stats) = Stats::of(&values) {
                        metrics.push((name, stats, unit));
                    }
                }
            }
            out.push(Pair {
                label,
                engine,
                runs,
                metrics,
            });
        }
    }
    out
}

/// What the run was and where it ran, written to `run.tsv` next to the
/// results (`benches/update-readme.py` puts it above the README table).
pub fn run_info(base: &Path, engines: &[&str], rounds: u64) -> Vec<(String, String)> {
    let read = |path: &str| std::fs::read_to_string(path).unwrap_or_default();
    let cpuinfo = read("/proc/cpuinfo");
    let cpu_model = cpuinfo
        .lines()
        .find_map(|l| {
            let (k, v) = l.split_once(':')?;
            (k.trim() == "model name").then(|| v.trim().to_string())
        })
        .unwrap_or_else(|| "unknown".into());
    // The file system type of the data directory, from `df -PT`.
    let data_fs = Command::new("df")
        .arg("-PT")
        .arg(base)
        .output()
        .ok()
        .and_then(|o| {
            let text = String::from_utf8_lossy(&o.stdout).into_owned();
            Some(text.lines().nth(1)?.split_whitespace().nth(1)?.to_string())
        })
        .unwrap_or_else(|| "unknown".into());
    let unix_time = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let env = |var: &str, default: &str| std::env::var(var).unwrap_or_else(|_| default.into());
    vec![
        ("unix_time".into(), unix_time.to_string()),
        (
            "nproc".into(),
            std::thread::available_parallelism()
                .map_or(0, |n| n.get())
                .to_string(),
        ),
        ("cpu_model".into(), cpu_model),
        ("mem_total_mib".into(), (mem_total() >> 20).to_string()),
        (
            "kernel".into(),
            read("/proc/sys/kernel/osrelease").trim().into(),
        ),
        ("data_dir".into(), base.display().to_string()),
        ("data_fs".into(), data_fs),
        ("loadavg_start".into(), loadavg()),
        ("peers_secs".into(), secs().as_secs_f64().to_string()),
        ("peers_rounds".into(), rounds.to_string()),
        (
            "peers_recovery_mib".into(),
            env_u64("PEERS_RECOVERY_MIB", 256).to_string(),
        ),
        ("engines".into(), engines.join(",")),
        ("workloads".into(), env("PEERS_WORKLOADS", "1,2,3,4,5,6")),
    ]
}

/// `target/peers-results` of the workspace (two levels above this crate's
/// manifest), where `benches/update-readme.py` looks by default.
fn default_out() -> PathBuf {
    let manifest = Path::new(env!("CARGO_MANIFEST_DIR"));
    manifest
        .ancestors()
        .nth(2)
        .unwrap_or(manifest)
        .join("target/peers-results")
}

/// The metric each workload is ranked by, and whether higher is better.
fn headline(label: &str) -> (&'static str, bool) {
    if label.starts_with("3 point") {
        return ("reads_per_s", true);
    }
    match label.chars().next() {
        Some('1') | Some('2') | Some('6') => ("ops_per_s", true),
        Some('3') => ("journals_per_s", true),
        Some('4') => ("batches_per_s", true),
        _ => ("open_s", false),
    }
}

pub fn report(runs: &[Run], info: &[(String, String)]) -> Res<()> {
    let out: PathBuf = std::env::var_os("PEERS_OUT").map_or_else(default_out, PathBuf::from);
    std::fs::create_dir_all(&out)?;
    let one_line = |s: &str| s.replace(['\t', '\n'], " ");

    let mut run = String::new();
    for (k, v) in info {
        run.push_str(&format!("{k}\t{}\n", one_line(v)));
    }
    File::create(out.join("run.tsv"))?.write_all(run.as_bytes())?;

    // TSV: every round's values in the order they ran (a failed round is
    // one line, metric `failed`, value 1, the error in place of the unit),
    // then per pair and metric the median, min and max over the successful
    // rounds (round `median`, `min`, `max`).
    let pairs = pairs(runs);
    let mut tsv = String::from("workload\tengine\tround\tmetric\tvalue\tunit\n");
    for r in runs {
        let (label, engine, round) = (&r.label, &r.engine, r.round);
        match &r.result {
            Ok(metrics) => {
                for (m, v, u) in metrics {
                    tsv.push_str(&format!("{label}\t{engine}\t{round}\t{m}\t{v}\t{u}\n"));
                }
            }
            Err(e) => tsv.push_str(&format!(
                "{label}\t{engine}\t{round}\tfailed\t1\t{}\n",
                one_line(e)
            )),
        }
    }
    for p in &pairs {
        for (m, s, u) in &p.metrics {
            for (round, v) in [("median", s.median), ("min", s.min), ("max", s.max)] {
                tsv.push_str(&format!(
                    "{}\t{}\t{round}\t{m}\t{v}\t{u}\n",
                    p.label, p.engine
                ));
            }
        }
    }
    File::create(out.join("results.tsv"))?.write_all(tsv.as_bytes())?;

    // Markdown: one row per (workload, engine) with the headline metric's
    // median and spread, the rounds that succeeded, the ratio of the median
    // to the best peer's median (not journalstore, not raw) and to raw's,
    // plus the other metrics' medians.
    let mut md = String::from(
        "| workload | engine | headline | spread | rounds | vs best peer | vs raw | other metrics |\n\
         | --- | --- | ---: | ---: | ---: | ---: | ---: | --- |\n",
    );
    for group in pairs.chunk_by(|a, b| a.label == b.label) {
        let label = group[0].label;
        let (metric, higher) = headline(label);
        let median = |p: &Pair| p.stats(metric).map(|s| s.median);
        let better = |a: f64, b: f64| if higher { a > b } else { a < b };
        let best_peer = group
            .iter()
            .filter(|p| p.engine != "journalstore" && !p.engine.starts_with("raw"))
            .filter_map(median)
            .fold(None, |acc: Option<f64>, v| match acc {
                Some(a) if !better(v, a) => Some(a),
                _ => Some(v),
            });
        let raw = group.iter().find(|p| p.engine == "raw").and_then(median);
        // Ratio > 1 always means "journalstore/this engine is better".
        let ratio = |v: Option<f64>, base: Option<f64>| match (v, base) {
            (Some(v), Some(b)) if b > 0.0 && v > 0.0 => {
                let r = if higher { v / b } else { b / v };
                if r >= 0.1 {
                    format!("{r:.2}x")
                } else {
                    format!("{r:.4}x")
                }
            }
            _ => "-".into(),
        };
        for p in group {
            let head = p.stats(metric);
            let head_text = head.map_or("-".into(), |s| format!("{:.4} {metric}", s.median));
            // A spread needs two rounds.
            let spread = match head.and_then(|s| s.spread()) {
                Some(x) if p.ok() >= 2 => format!("±{:.1} %", x * 100.0),
                _ => "-".into(),
            };
            let mut others: Vec<String> = p
                .metrics
                .iter()
                .filter(|m| m.0 != metric)
                .map(|(m, s, u)| format!("{m}={:.3}{u}", s.median))
                .collect();
            let failed: Vec<String> = p
                .runs
                .iter()
                .filter(|r| r.result.is_err())
                .map(|r| r.round.to_string())
                .collect();
            if let Some(err) = p.runs.iter().find_map(|r| r.result.as_ref().err()) {
                others.push(format!(
                    "failed in round{} {}: {}",
                    if failed.len() > 1 { "s" } else { "" },
                    failed.join(","),
                    one_line(err).replace('|', "\\|")
                ));
            }
            md.push_str(&format!(
                "| {label} | {} | {head_text} | {spread} | {}/{} | {} | {} | {} |\n",
                p.engine,
                p.ok(),
                p.runs.len(),
                ratio(median(p), best_peer),
                ratio(median(p), raw),
                others.join(" ")
            ));
        }
    }
    File::create(out.join("results.md"))?.write_all(md.as_bytes())?;
    println!("{md}");
    println!(
        "medians over the successful rounds; spread = (max - min) / 2 / median of \
         the headline; ratios (of medians): >1 = better than the best peer / the \
         raw baseline (throughput ratio, or inverse time ratio for open)"
    );
    println!("written: {}", out.display());
    Ok(())
}
