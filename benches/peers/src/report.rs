//! The parent's output: `run.tsv` (date, machine, settings), `results.tsv`
//! (one line per workload, engine and metric) and `results.md` (one row per
//! workload and engine with the ratios to the best peer and to the raw
//! baseline), all in `PEERS_OUT`. `benches/update-readme.py` reads
//! `results.md` and `run.tsv`.

use std::collections::BTreeMap;
use std::fs::File;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;

use crate::sys::{loadavg, mem_total};
use crate::workloads::{env_u64, secs};
use crate::Res;

/// One row of results: workload label, engine, metrics.
pub type Row = (String, String, Vec<(String, f64, String)>);

/// What the run was and where it ran, written to `run.tsv` next to the
/// results (`benches/update-readme.py` puts it above the README table).
pub fn run_info(base: &Path, engines: &[&str]) -> Vec<(String, String)> {
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
    match label.chars().next() {
        Some('1') | Some('2') | Some('6') => ("ops_per_s", true),
        Some('3') => ("journals_per_s", true),
        Some('4') => ("batches_per_s", true),
        _ => ("open_s", false),
    }
}

pub fn report(rows: &[Row], info: &[(String, String)]) -> Res<()> {
    let out: PathBuf = std::env::var_os("PEERS_OUT").map_or_else(default_out, PathBuf::from);
    std::fs::create_dir_all(&out)?;

    let mut run = String::new();
    for (k, v) in info {
        run.push_str(&format!("{k}\t{}\n", v.replace(['\t', '\n'], " ")));
    }
    File::create(out.join("run.tsv"))?.write_all(run.as_bytes())?;

    let mut tsv = String::from("workload\tengine\tmetric\tvalue\tunit\n");
    for (label, engine, metrics) in rows {
        for (m, v, u) in metrics {
            tsv.push_str(&format!("{label}\t{engine}\t{m}\t{v}\t{u}\n"));
        }
    }
    File::create(out.join("results.tsv"))?.write_all(tsv.as_bytes())?;

    // Markdown: one row per (workload, engine) with the headline metric, the
    // ratio to the best peer (not journalstore, not raw) and to raw, plus
    // the other metrics.
    let mut by_label: BTreeMap<&str, Vec<&Row>> = BTreeMap::new();
    for row in rows {
        by_label.entry(row.0.as_str()).or_default().push(row);
    }
    let get = |row: &Row, m: &str| row.2.iter().find(|x| x.0 == m).map(|x| x.1);
    let mut md = String::from(
        "| workload | engine | headline | vs best peer | vs raw | other metrics |\n\
         | --- | --- | ---: | ---: | ---: | --- |\n",
    );
    for (label, rows) in &by_label {
        let (metric, higher) = headline(label);
        let better = |a: f64, b: f64| if higher { a > b } else { a < b };
        let best_peer = rows
            .iter()
            .filter(|r| r.1 != "journalstore" && !r.1.starts_with("raw"))
            .filter_map(|r| get(r, metric))
            .fold(None, |acc: Option<f64>, v| match acc {
                Some(a) if !better(v, a) => Some(a),
                _ => Some(v),
            });
        let raw = rows
            .iter()
            .find(|r| r.1 == "raw")
            .and_then(|r| get(r, metric));
        // Ratio > 1 always means "journalstore/this engine is better".
        let ratio = |v: f64, base: Option<f64>| match base {
            Some(b) if b > 0.0 && v > 0.0 => {
                let r = if higher { v / b } else { b / v };
                if r >= 0.1 {
                    format!("{r:.2}x")
                } else {
                    format!("{r:.4}x")
                }
            }
            _ => "-".into(),
        };
        for row in rows {
            let Some(v) = get(row, metric) else { continue };
            let others: Vec<String> = row
                .2
                .iter()
                .filter(|x| x.0 != metric)
                .map(|(m, v, u)| format!("{m}={v:.3}{u}"))
                .collect();
            md.push_str(&format!(
                "| {label} | {} | {v:.4} {metric} | {} | {} | {} |\n",
                row.1,
                ratio(v, best_peer),
                ratio(v, raw),
                others.join(" ")
            ));
        }
    }
    File::create(out.join("results.md"))?.write_all(md.as_bytes())?;
    println!("{md}");
    println!(
        "ratios: >1 = better than the best peer / the raw baseline (throughput \
         ratio, or inverse time ratio for open)"
    );
    println!("written: {}", out.display());
    Ok(())
}
