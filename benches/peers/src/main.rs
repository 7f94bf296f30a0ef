//! Peer comparison: the same journal workloads on journalstore, on the
//! engines a user would pick instead, and on a raw `pwrite` (+ `fdatasync`)
//! baseline with no engine.
//!
//! Run: `cargo bench -p peers` (redb, fjall, LMDB via heed); add
//! `--features peer-rocksdb` / `peer-raft-engine` / `peers-all` for the
//! engines with long native builds. See `benches/README.md` for what each
//! workload does, how each engine is configured, and the environment
//! variables (`PEERS_SECS`, `PEERS_ROUNDS`, `PEERS_ENGINES`,
//! `PEERS_WORKLOADS`, `PEERS_RECOVERY_MIB`, `PEERS_DIR`, `PEERS_OUT`).
//!
//! Every (workload, engine) pair runs `PEERS_ROUNDS` times (default 3), the
//! engines interleaved: for each workload, round 1 runs every engine once,
//! then round 2 runs every engine again, and so on; round r starts at the
//! (r-1)-th engine (mod their number), so that no engine always runs first,
//! right after the previous workload. Each run is a child process (this
//! binary re-executed with `--child ...`), so peak memory (VmHWM) is per
//! run, one engine's background threads cannot slow the next, and the
//! recovery workload can SIGKILL a writer. Children print
//! `metric\tvalue\tunit` lines; the parent collects them into a TSV file
//! (every round, plus median, min and max) and a Markdown table (medians,
//! the headline's spread, the ratios to the best peer and to the raw
//! baseline), plus `run.tsv` (date, machine, settings) for
//! `benches/update-readme.py`.
//!
//! Modules: `engines` (one file per engine behind the `Engine` trait),
//! `workloads` (what runs in a child), `report` (the parent's output
//! files), `stats` (median, min, max and spread over the rounds), `sys`
//! (disk use, memory, load from /proc).

mod engines;
mod report;
mod stats;
mod sys;
mod workloads;

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::Duration;

use engines::ENGINES;
use report::Run;
use sys::loadavg;
use workloads::env_u64;

type BoxError = Box<dyn std::error::Error + Send + Sync>;
type Res<T> = std::result::Result<T, BoxError>;

fn main() -> Res<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if let Some(pos) = args.iter().position(|a| a == "--child") {
        return workloads::run(&args[pos + 1..]);
    }
    let filter = |var: &str, name: &str| {
        std::env::var(var).map_or(true, |v| v.split(',').any(|x| x.trim() == name))
    };
    let base: PathBuf =
        std::env::var_os("PEERS_DIR").map_or_else(std::env::temp_dir, PathBuf::from);
    std::fs::create_dir_all(&base)?;
    let mut engines: Vec<&str> = vec!["raw", "raw-group", "raw-group-fresh"];
    engines.extend_from_slice(ENGINES);
    engines.retain(|e| filter("PEERS_ENGINES", e));
    let rounds = env_u64("PEERS_ROUNDS", 3).max(1);
    let settle_ms = env_u64("PEERS_SETTLE_MS", 2000);
    let mut info = report::run_info(&base, &engines, rounds);
    info.push(("peers_settle_ms".into(), settle_ms.to_string()));

    // (label, child workload, extra arg, whether raw takes part)
    let mut plan: Vec<(String, &str, Option<&str>, bool)> = Vec::new();
    for t in ["4", "64"] {
        plan.push((format!("1 durable append x{t}"), "durable", Some(t), true));
    }
    plan.push((
        "1 durable append 64 KiB x4".into(),
        "durable-64k",
        Some("4"),
        true,
    ));
    for t in ["4", "64"] {
        plan.push((format!("2 buffered append x{t}"), "buffered", Some(t), true));
    }
    plan.push(("3 snapshot read x2".into(), "read", None, false));
    plan.push(("3 point read x2".into(), "point", None, false));
    plan.push(("4 churn x4".into(), "churn", None, false));
    plan.push((
        "4 churn small live set x4".into(),
        "churn-small",
        None,
        false,
    ));
    plan.push(("5 open after clean close".into(), "open-clean", None, false));
    plan.push(("5 open after kill".into(), "open-kill", None, false));
    plan.push((
        "5 open after clean close, cold cache".into(),
        "open-cold",
        None,
        false,
    ));
    for g in ["64", "256"] {
        plan.push((format!("6 raft groups x{g}"), "raft-groups", Some(g), false));
    }
    let workload_key = |w: &str| match w {
        "durable" | "durable-64k" => "1",
        "buffered" => "2",
        "read" | "point" => "3",
        "churn" | "churn-small" => "4",
        "raft-groups" => "6",
        _ => "5",
    };

    let mut runs: Vec<Run> = Vec::new();
    for (label, workload, arg, with_raw) in &plan {
        if !filter("PEERS_WORKLOADS", workload_key(workload)) {
            continue;
        }
        let taking_part: Vec<&str> = engines
            .iter()
            .copied()
            .filter(|e| *with_raw || !e.starts_with("raw"))
            // Workload 6 compares the two Raft log stores only.
            .filter(|e| *workload != "raft-groups" || ["journalstore", "raft-engine"].contains(e))
            .collect();
        if taking_part.is_empty() {
            continue;
        }
        for round in 1..=rounds {
            // Round r starts at engine r-1 (mod n): the engines interleaved,
            // their order rotated.
            let start = (round - 1) as usize % taking_part.len();
            let (tail, head) = taking_part.split_at(start);
            for &engine in head.iter().chain(tail) {
                settle(settle_ms);
                eprintln!("running {label} on {engine}, round {round}/{rounds}");
                let result = run_pair(workload, *arg, engine, &base);
                if let Err(err) = &result {
                    eprintln!("  {label} on {engine}, round {round} failed: {err}");
                }
                runs.push(Run {
                    label: label.clone(),
                    engine: engine.to_string(),
                    round,
                    result: result.map_err(|e| e.to_string()),
                });
            }
        }
    }
    info.push(("loadavg_end".into(), loadavg()));
    report::report(&runs, &info)
}

/// Runs one round of one (workload, engine) pair in a fresh directory under
/// `base` and returns its metrics.
fn run_pair(
    workload: &str,
    arg: Option<&str>,
    engine: &str,
    base: &std::path::Path,
) -> Res<Vec<report::Metric>> {
    let dir = tempfile::tempdir_in(base)?;
    let d = dir.path().to_str().ok_or("non-UTF-8 temp dir")?;
    match workload {
        "open-clean" => {
            run_child(&["fill", engine, d]).and_then(|_| run_child(&["open", engine, d]))
        }
        "open-kill" => fill_and_kill(engine, d).and_then(|_| run_child(&["open", engine, d])),
        "open-cold" => run_child(&["fill", engine, d])
            .and_then(|_| drop_page_cache())
            .and_then(|()| run_child(&["open", engine, d])),
        w => {
            let mut a = vec![w, engine, d];
            a.extend(arg);
            run_child(&a)
        }
    }
}

/// Before each pair: writes every dirty page back (`sync`) and waits
/// `settle_ms`, so that a child does not share the disk with the writeback
/// and the freeing of the previous child's files. Without it, children run
/// back to back were measured up to 2x slower after another engine's run
/// (benches/README.md, "Durable appends, 64 KiB"). The wait is a fixed
/// time, not a wait for the disk to go idle: whatever the disk still did
/// after a sync showed in no counter of the development machine
/// (`/sys/block/*/stat` stayed still).
fn settle(settle_ms: u64) {
    if settle_ms == 0 {
        return;
    }
    let _ = Command::new("sync").status();
    std::thread::sleep(Duration::from_millis(settle_ms));
}

/// Writes dirty pages back and drops the page cache, so that the next open
/// reads its files from the disk (needs root; the pair fails otherwise).
fn drop_page_cache() -> Res<()> {
    Command::new("sync").status()?;
    std::fs::write("/proc/sys/vm/drop_caches", "3\n")
        .map_err(|e| format!("cannot drop the page cache (needs root): {e}"))?;
    Ok(())
}

/// Runs one child and returns its metrics.
fn run_child(args: &[&str]) -> Res<Vec<report::Metric>> {
    let out = Command::new(std::env::current_exe()?)
        .arg("--child")
        .args(args)
        .stderr(Stdio::inherit())
        .output()?;
    if !out.status.success() {
        return Err(format!("child {args:?} failed: {}", out.status).into());
    }
    Ok(parse_metrics(&String::from_utf8_lossy(&out.stdout)))
}

fn parse_metrics(text: &str) -> Vec<report::Metric> {
    text.lines()
        .filter_map(|l| {
            let mut f = l.split('\t');
            let (m, v, u) = (f.next()?, f.next()?, f.next()?);
            Some((m.to_string(), v.parse().ok()?, u.to_string()))
        })
        .collect()
}

/// Starts a `fill-kill` child, waits for `ready`, lets it write 300 ms more,
/// and SIGKILLs it.
fn fill_and_kill(engine: &str, dir: &str) -> Res<()> {
    let mut child = Command::new(std::env::current_exe()?)
        .args(["--child", "fill-kill", engine, dir])
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()?;
    let mut line = String::new();
    BufReader::new(child.stdout.take().ok_or("no stdout")?).read_line(&mut line)?;
    if line.trim() != "ready" {
        let _ = child.kill();
        return Err(format!("fill-kill child said {line:?}").into());
    }
    std::thread::sleep(Duration::from_millis(300));
    child.kill()?; // SIGKILL
    child.wait()?;
    Ok(())
}
