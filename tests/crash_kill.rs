//! Real process crashes: a child process writing from several threads is
//! killed with SIGKILL at random moments, many times over the same store
//! directory, so each child recovers what the previous one left (recovery
//! after recovery, kills during recovery included). Once with
//! `SyncMode::Always`, once with `SyncMode::Never`, whose writes are
//! acknowledged once in the page cache, which a process crash keeps: rolls
//! then leave their manifest swap pending, and a kill before it must not
//! lose what was written to the new segment (`MANIFEST.next`).
//!
//! The test binary is its own child: `child_writer` (ignored, and a no-op
//! unless `JOURNALSTORE_CRASH_DIR` is set) opens the store and writes until
//! killed. Each writer thread owns the journals `w<T>/…` and writes batch
//! number `n` = 1, 2, … of a sequence that is deterministic given the thread,
//! `n` and the thread's state (see [`batch`]); every batch also sets the
//! metadata of `w<T>/seq` to `n`. After every acknowledged write the child
//! prints `ack <thread> <n> <lsn>`. A child resumes each thread's sequence
//! from the `seq` counter it recovers.
//!
//! After each kill the parent recovers a copy of the directory (leaving the
//! original for the next child to recover) and checks, per thread, that the
//! state is exactly the model after the first `k` batches for the `k` the
//! counter shows, with `k` at least the last acknowledged `n` (no
//! acknowledged batch lost, no batch half applied; batches written but not
//! yet acknowledged when the kill came may be there). LSNs acknowledged by a
//! thread increase, and every child's LSNs are above everything recovered
//! before it.

mod common;

use std::collections::BTreeSet;
use std::io::{BufRead, BufReader, Write};
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use common::{read_journal, to_batch, Model, Op, Rng};
use journalstore::{Options, Snapshot, Store, SyncMode};

/// Environment variable naming the store directory of a child writer.
const DIR_VAR: &str = "JOURNALSTORE_CRASH_DIR";
/// Environment variable set (to anything) for a `SyncMode::Never` child.
const NEVER_VAR: &str = "JOURNALSTORE_CRASH_NEVER";
/// Writer threads in the child.
const THREADS: usize = 3;
/// Journals per writer thread (besides its counter journal).
const JOURNALS: u64 = 4;
/// Small segments so that kills also land in rolls and segment frees.
const SEGMENT_SIZE: u64 = 16 << 10;
/// Kill/recover cycles.
const ITERATIONS: usize = 40;

fn options(sync: SyncMode) -> Options {
    Options {
        sync,
        segment_size: SEGMENT_SIZE,
        ..Options::default()
    }
}

fn journal_id(t: usize, name: &str) -> Vec<u8> {
    format!("w{t}/{name}").into_bytes()
}

/// Batch number `n` of thread `t`, given the thread's state after batches
/// `1..n`. Deterministic in (`t`, `n`, `state`), always valid against
/// `state`: appends (with `append_at`) of entries whose bytes name their
/// journal, index and batch, metadata set to the journal's length, and now
/// and then a truncate, a trim or a delete. Ends by setting the counter.
fn batch(t: usize, n: u64, state: &Model) -> Vec<Op> {
    let mut rng = Rng::new(((t as u64) << 40) ^ n);
    let mut ops = Vec::new();
    let mut chosen = BTreeSet::new();
    for _ in 0..1 + rng.below(3) {
        chosen.insert(rng.below(JOURNALS));
    }
    for j in chosen {
        let id = journal_id(t, &format!("j{j}"));
        let (mut first, mut end) = state
            .journals
            .get(&id)
            .map_or((0, 0), |j| (j.first, j.end()));
        let roll = rng.below(100);
        if roll < 4 {
            ops.push(Op::Delete(id));
            continue;
        }
        if roll < 14 && end > first {
            end = first + rng.below(end - first + 1);
            ops.push(Op::Truncate(id.clone(), end));
        } else if roll < 24 && end > first {
            first += rng.below(end - first + 1);
            ops.push(Op::Trim(id.clone(), first));
        }
        for _ in 0..1 + rng.below(3) {
            let mut value = format!("w{t}/j{j}@{end}#{n}:").into_bytes();
            let max_pad = if rng.chance(10) { 3000 } else { 300 };
            let pad = rng.below(max_pad);
            value.extend((0..pad).map(|i| (i as u8).wrapping_mul(31).wrapping_add(n as u8)));
            ops.push(Op::Append(id.clone(), Some(end), value));
            end += 1;
        }
        ops.push(Op::SetMetadata(id, (end - first).to_string().into_bytes()));
    }
    ops.push(Op::SetMetadata(
        journal_id(t, "seq"),
        n.to_string().into_bytes(),
    ));
    ops
}

/// Reads each thread's journals into a model; panics on any read error.
fn read_state(snap: &Snapshot, ctx: &str) -> Vec<Model> {
    let mut models = vec![Model::default(); THREADS];
    for id in snap.journal_ids() {
        let t = (0..THREADS)
            .find(|&t| id.starts_with(&journal_id(t, "")))
            .unwrap_or_else(|| panic!("{ctx}: journal {id:?} belongs to no thread"));
        let journal = read_journal(snap, id, ctx);
        models[t].journals.insert(id.to_vec(), journal);
    }
    models
}

/// The counter of thread `t` in `state`: how many of its batches it holds.
fn counter(t: usize, state: &Model) -> u64 {
    state.journals.get(&journal_id(t, "seq")).map_or(0, |j| {
        String::from_utf8_lossy(j.metadata.as_deref().unwrap_or_default())
            .parse()
            .unwrap()
    })
}

/// The child: writes batches from `THREADS` threads until killed. Runs only
/// when the parent test sets `JOURNALSTORE_CRASH_DIR`.
#[test]
#[ignore = "child process of the sigkilled_* tests"]
fn child_writer() {
    let Some(dir) = std::env::var_os(DIR_VAR) else {
        return;
    };
    let die = |what: String| -> ! {
        eprintln!("child_writer: {what}");
        std::process::exit(3)
    };
    let sync = match std::env::var_os(NEVER_VAR) {
        Some(_) => SyncMode::Never,
        None => SyncMode::Always,
    };
    let store = Store::open(&dir, options(sync)).unwrap_or_else(|e| die(format!("open: {e}")));
    let states = read_state(&store.snapshot(), "child");
    let counters: Vec<String> = (0..THREADS)
        .map(|t| counter(t, &states[t]).to_string())
        .collect();
    let say = |line: String| {
        let mut out = std::io::stdout().lock();
        // One short line per write(2) to a pipe: never interleaved or torn.
        out.write_all(line.as_bytes())
            .and_then(|()| out.flush())
            .unwrap_or_else(|e| die(format!("stdout: {e}")));
    };
    say(format!("ready {}\n", counters.join(" ")));
    std::thread::scope(|s| {
        for (t, mut state) in states.into_iter().enumerate() {
            let store = &store;
            s.spawn(move || {
                let mut n = counter(t, &state);
                loop {
                    n += 1;
                    let ops = batch(t, n, &state);
                    let lsn = store
                        .write(&to_batch(&ops))
                        .unwrap_or_else(|e| die(format!("thread {t} batch {n}: {e}")));
                    say(format!("ack {t} {n} {lsn}\n"));
                    state.apply(&ops).expect("generated batches are valid");
                }
            });
        }
    });
}

/// What the parent learned from one child's output.
#[derive(Debug, Default)]
struct Heard {
    /// The counters the child recovered, if it got that far.
    ready: Option<Vec<u64>>,
    /// `(thread, n, lsn)` of every acknowledged batch, in print order.
    acks: Vec<(usize, u64, u64)>,
}

/// Takes in one line of the child's stdout. The test harness's own lines
/// are ignored; its "test child_writer ... " may precede the first line.
fn parse(line: &str, heard: &mut Heard) {
    let line = ["ready ", "ack "]
        .iter()
        .find_map(|tag| line.find(tag).map(|at| &line[at..]))
        .unwrap_or(line);
    let numbers = |rest: &str| -> Vec<u64> {
        rest.split_whitespace()
            .map(|w| w.parse().unwrap_or_else(|_| panic!("bad line {line:?}")))
            .collect()
    };
    if let Some(rest) = line.strip_prefix("ready ") {
        heard.ready = Some(numbers(rest));
    } else if let Some(rest) = line.strip_prefix("ack ") {
        let w = numbers(rest);
        heard.acks.push((w[0] as usize, w[1], w[2]));
    }
}

/// The child process, killed if the parent panics before killing it.
struct Child(std::process::Child);

impl Drop for Child {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Copies the store's files (the directory is flat) to `to`.
fn copy_store(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        std::fs::copy(entry.path(), to.join(entry.file_name())).unwrap();
    }
}

/// Segment ids the MANIFEST lists (layout in `format-spec/README.md`: a
/// 40-byte header with the count at 12..16, 16-byte entries led by the id).
fn manifest_segments(dir: &Path) -> BTreeSet<u64> {
    let bytes = std::fs::read(dir.join("MANIFEST")).unwrap();
    let count = u32::from_le_bytes(bytes[12..16].try_into().unwrap()) as usize;
    (0..count)
        .map(|i| u64::from_le_bytes(bytes[40 + 16 * i..48 + 16 * i].try_into().unwrap()))
        .collect()
}

fn segment_files(dir: &Path) -> BTreeSet<u64> {
    std::fs::read_dir(dir)
        .unwrap()
        .filter_map(|e| {
            let name = e.unwrap().file_name().to_string_lossy().into_owned();
            let hex = name.strip_prefix("seg-")?.strip_suffix(".jseg")?.to_owned();
            Some(u64::from_str_radix(&hex, 16).unwrap())
        })
        .collect()
}

/// The parent's knowledge of each writer thread.
struct Expected {
    /// `k[t]`: batches of thread `t` the last recovery found.
    k: Vec<u64>,
    /// The model of thread `t` after its first `k[t]` batches.
    models: Vec<Model>,
    /// Highest `n` thread `t` ever acknowledged.
    acked: Vec<u64>,
    /// Highest LSN ever acknowledged.
    max_acked_lsn: u64,
}

impl Expected {
    /// Recovers `dir`, checks it against the model (see the module comment)
    /// and returns the recovered snapshot LSN.
    fn check(&mut self, dir: &Path, ctx: &str) -> u64 {
        let store = Store::open(dir, options(SyncMode::Always))
            .unwrap_or_else(|e| panic!("{ctx}: recovery after SIGKILL failed: {e}"));
        let snap = store.snapshot();
        let states = read_state(&snap, ctx);
        for (t, state) in states.iter().enumerate() {
            let k = counter(t, state);
            assert!(
                k >= self.acked[t] && k >= self.k[t],
                "{ctx}: thread {t} recovered {k} batches, but had acknowledged {} \
                 and an earlier recovery found {}",
                self.acked[t],
                self.k[t]
            );
            for n in self.k[t] + 1..=k {
                let ops = batch(t, n, &self.models[t]);
                self.models[t]
                    .apply(&ops)
                    .expect("generated batches are valid");
            }
            self.k[t] = k;
            assert!(
                *state == self.models[t],
                "{ctx}: thread {t} does not hold exactly its first {k} batches"
            );
        }
        let lsn = snap.lsn();
        assert!(
            lsn >= self.max_acked_lsn,
            "{ctx}: recovered LSN {lsn} below acknowledged LSN {}",
            self.max_acked_lsn
        );
        drop(snap);
        store.close().unwrap();
        assert_eq!(
            segment_files(dir),
            manifest_segments(dir),
            "{ctx}: segment files vs manifest after recovery"
        );
        assert!(
            !dir.join("MANIFEST.tmp").exists(),
            "{ctx}: MANIFEST.tmp left"
        );
        lsn
    }
}

/// Every batch a SIGKILLed `SyncMode::Always` writer acknowledged is found
/// by the next recovery, batches are all-or-nothing, each thread's state is
/// exactly a prefix of its batches, and LSNs keep increasing across
/// restarts; 40 kills at random moments (during recovery too) on one store.
#[test]
fn sigkilled_writers_lose_no_acknowledged_batch() {
    kill_and_recover(SyncMode::Always, 0x5EED_C0DE);
}

/// The same with `SyncMode::Never`: a process crash keeps the page cache,
/// so every batch acknowledged (written, not synced) is found again,
/// including those written to a segment whose roll had not yet swapped the
/// manifest when the kill came.
#[test]
fn sigkilled_buffered_writers_lose_no_acknowledged_batch() {
    kill_and_recover(SyncMode::Never, 0xB0FF_E12D);
}

fn kill_and_recover(sync: SyncMode, seed: u64) {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("store");
    let mut rng = Rng::new(seed);
    let mut expected = Expected {
        k: vec![0; THREADS],
        models: vec![Model::default(); THREADS],
        acked: vec![0; THREADS],
        max_acked_lsn: 0,
    };
    let mut recovered_lsn = 0;
    let (mut total_acks, mut productive) = (0, 0);
    for iteration in 0..ITERATIONS {
        let ctx = format!("iteration {iteration}");
        let mut child = Command::new(std::env::current_exe().unwrap())
            .args([
                "child_writer",
                "--exact",
                "--ignored",
                "--nocapture",
                "--test-threads=1",
            ])
            .env(DIR_VAR, &dir)
            .envs((sync == SyncMode::Never).then_some((NEVER_VAR, "1")))
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap();
        let stdout = child.stdout.take().unwrap();
        let mut child = Child(child);
        let (lines_tx, lines) = mpsc::channel::<String>();
        let reader = std::thread::spawn(move || {
            let mut stdout = BufReader::new(stdout);
            let mut line = Vec::new();
            // Only whole lines count; EOF comes when the child is dead.
            while stdout.read_until(b'\n', &mut line).unwrap_or(0) > 0 {
                if line.ends_with(b"\n") {
                    let _ = lines_tx.send(String::from_utf8_lossy(&line).into_owned());
                }
                line.clear();
            }
        });
        let mut heard = Heard::default();
        // Mostly kill while writing, after a random number of acknowledged
        // batches (so that every machine speed sees writes) plus a random few
        // milliseconds; sometimes a few milliseconds after the start, which
        // may be during startup or recovery.
        if rng.chance(80) {
            let acks = rng.below(30) as usize;
            let deadline = Instant::now() + Duration::from_secs(60);
            while heard.ready.is_none() || heard.acks.len() < acks {
                let wait = deadline.saturating_duration_since(Instant::now());
                let line = lines.recv_timeout(wait).unwrap_or_else(|e| {
                    panic!(
                        "{ctx}: child not ready or not writing ({e}); status {:?}",
                        child.0.try_wait()
                    )
                });
                parse(&line, &mut heard);
            }
            std::thread::sleep(Duration::from_millis(rng.below(20)));
        } else {
            std::thread::sleep(Duration::from_millis(1 + rng.below(40)));
        }
        assert!(
            child.0.try_wait().unwrap().is_none(),
            "{ctx}: the child exited by itself (see its stderr)"
        );
        child.0.kill().unwrap(); // SIGKILL
        child.0.wait().unwrap();
        reader.join().unwrap();
        for line in lines.try_iter() {
            parse(&line, &mut heard);
        }

        // The child recovered what the parent's last check recovered.
        if let Some(ready) = &heard.ready {
            assert_eq!(ready, &expected.k, "{ctx}: child recovered other counters");
        }
        let mut last = [None; THREADS];
        for &(t, n, lsn) in &heard.acks {
            assert!(
                lsn > recovered_lsn,
                "{ctx}: thread {t} batch {n} got LSN {lsn}, not above {recovered_lsn} \
                 recovered before this child"
            );
            if let Some((prev_n, prev_lsn)) = last[t] {
                assert!(
                    n == prev_n + 1 && lsn > prev_lsn,
                    "{ctx}: thread {t} acknowledged batch {n} with LSN {lsn} \
                     after batch {prev_n} with LSN {prev_lsn}"
                );
            }
            last[t] = Some((n, lsn));
            expected.acked[t] = expected.acked[t].max(n);
            expected.max_acked_lsn = expected.max_acked_lsn.max(lsn);
        }
        total_acks += heard.acks.len();
        productive += usize::from(!heard.acks.is_empty());

        // Check a copy, so that the next child recovers the killed state.
        let copy = tmp.path().join(format!("check-{iteration}"));
        if dir.exists() {
            copy_store(&dir, &copy);
            recovered_lsn = expected.check(&copy, &ctx);
            std::fs::remove_dir_all(&copy).unwrap();
        }
    }
    expected.check(&dir, "final recovery of the original");
    assert!(
        productive >= ITERATIONS / 2 && total_acks >= 200,
        "only {productive} of {ITERATIONS} children acknowledged writes ({total_acks} in all)"
    );
}
