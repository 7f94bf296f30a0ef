//! 64 Raft groups in one store, each driven by a random sequence of
//! appends, truncates, purges and vote changes through openraft's
//! `RaftLogStorage`, in a child process that is SIGKILLed; after each kill
//! the parent reopens the store and checks every group against a model.
//!
//! The test binary is its own child: `child_groups` (ignored, and a no-op
//! unless `JOURNALSTORE_RAFT_CRASH_DIR` is set) opens the store and runs one
//! task per group. Operation `k` (1, 2, …) of group `g` is deterministic
//! given `g`, `k` and the group's state after operations `1..k` (see
//! [`next_op`]), so the parent can replay it. An append returns to the child
//! when openraft's flush callback ran, and a vote when `save_vote` returned;
//! the child then prints `ack <g> <k>`: operations `1..=k` of `g` are
//! durable (a sync covers every write made before it, truncates and purges
//! included).
//!
//! After a kill the parent finds, per group, the `k` whose model state the
//! store holds (vote, last purged log id, entries with their log ids and
//! payloads): it must be at least the last acknowledged `k` (no
//! acknowledged append or vote lost; a truncate or purge is never half
//! done). The next child resumes every group from the `k` found, so the
//! store goes through several kills.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use journalstore::Options;
use journalstore_openraft::kv::{Request, TypeConfig};
use journalstore_openraft::RaftStore;
use openraft::storage::{RaftLogStorage, RaftLogStorageExt};
use openraft::{CommittedLeaderId, Entry, EntryPayload, LogId, RaftLogReader, Vote};

const DIR_VAR: &str = "JOURNALSTORE_RAFT_CRASH_DIR";
const RESUME_VAR: &str = "JOURNALSTORE_RAFT_CRASH_RESUME";
const GROUPS: u64 = 64;
const KILLS: usize = 8;
/// Operations a group may have issued past its last acknowledgement: a
/// group waits at each append and vote, and [`next_op`] never makes more
/// than a few truncates and purges in a row.
const AHEAD: u64 = 16;

/// The state of one group's log, as the model and the store see it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
struct State {
    vote: Option<Vote<u64>>,
    last_purged: Option<LogId<u64>>,
    /// Contiguous entries: log id and payload value.
    entries: Vec<(LogId<u64>, String)>,
}

impl State {
    /// The index the next append goes to.
    fn next_index(&self) -> u64 {
        match (self.entries.last(), &self.last_purged) {
            (Some((id, _)), _) => id.index + 1,
            (None, Some(p)) => p.index + 1,
            (None, None) => 0,
        }
    }

    fn term(&self) -> u64 {
        let vote = self.vote.map_or(0, |v| v.leader_id.term);
        let last = self.entries.last().map_or(0, |(id, _)| id.leader_id.term);
        vote.max(last)
    }
}

#[derive(Clone, Debug)]
enum Op {
    Append(Vec<(LogId<u64>, String)>),
    Truncate(LogId<u64>),
    Purge(LogId<u64>),
    Vote(Vote<u64>),
}

fn log_id(term: u64, index: u64) -> LogId<u64> {
    LogId::new(CommittedLeaderId::new(term, 1), index)
}

/// Operation `k` of group `g` given the state after operations `1..k`.
fn next_op(g: u64, k: u64, s: &State) -> Op {
    let mut rng = fastrand::Rng::with_seed((g << 32) ^ k);
    let roll = rng.u64(0..100);
    // Every fourth operation is one that waits (append or vote).
    let waits = k.is_multiple_of(4);
    if !waits && roll < 20 && !s.entries.is_empty() {
        let first = s.entries[0].0.index;
        let at = rng.u64(first..s.next_index());
        let id = s.entries[(at - first) as usize].0;
        return Op::Truncate(id);
    }
    if !waits && roll < 40 {
        let from = s.last_purged.map_or(0, |p| p.index + 1);
        let at = rng.u64(from..s.next_index() + 3);
        let id = match s.entries.iter().find(|(id, _)| id.index == at) {
            Some((id, _)) => *id,
            None => log_id(s.term(), at),
        };
        return Op::Purge(id);
    }
    if roll < 55 {
        return Op::Vote(Vote::new(s.term() + 1, rng.u64(1..4)));
    }
    let term = s.term();
    let next = s.next_index();
    let n = rng.u64(1..5);
    Op::Append(
        (0..n)
            .map(|i| (log_id(term, next + i), format!("g{g}-k{k}-{i}")))
            .collect(),
    )
}

fn apply(s: &mut State, op: &Op) {
    match op {
        Op::Append(entries) => s.entries.extend(entries.iter().cloned()),
        Op::Truncate(id) => s.entries.retain(|(e, _)| e.index < id.index),
        Op::Purge(id) => {
            s.entries.retain(|(e, _)| e.index > id.index);
            s.last_purged = Some(*id);
        }
        Op::Vote(v) => s.vote = Some(*v),
    }
}

/// The model state of group `g` after operations `from+1..=to`, from
/// `state` (the state after `from`).
fn replay(g: u64, from: u64, to: u64, mut state: State) -> State {
    for k in from + 1..=to {
        let op = next_op(g, k, &state);
        apply(&mut state, &op);
    }
    state
}

fn entry(id: LogId<u64>, value: &str) -> Entry<TypeConfig> {
    Entry {
        log_id: id,
        payload: EntryPayload::Normal(Request::Set {
            key: "k".into(),
            value: value.into(),
        }),
    }
}

/// What the store holds for group `g`.
async fn read(stores: &RaftStore, g: u64) -> State {
    let mut log = stores.log_store::<TypeConfig>(g);
    let vote = log.read_vote().await.unwrap();
    let last_purged = log.get_log_state().await.unwrap().last_purged_log_id;
    let entries = log
        .try_get_log_entries(..)
        .await
        .unwrap()
        .into_iter()
        .map(|e| match e.payload {
            EntryPayload::Normal(Request::Set { value, .. }) => (e.log_id, value),
            other => panic!("group {g}: unexpected payload {other:?}"),
        })
        .collect();
    State {
        vote,
        last_purged,
        entries,
    }
}

fn parse_resume(text: &str) -> BTreeMap<u64, u64> {
    text.split_whitespace()
        .map(|pair| {
            let (g, k) = pair.split_once('=').unwrap();
            (g.parse().unwrap(), k.parse().unwrap())
        })
        .collect()
}

/// The child: drives every group until killed.
#[test]
#[ignore = "the child process of groups_survive_sigkill"]
fn child_groups() {
    let Some(dir) = std::env::var_os(DIR_VAR) else {
        return;
    };
    let resume = parse_resume(&std::env::var(RESUME_VAR).unwrap_or_default());
    let rt = tokio::runtime::Runtime::new().unwrap();
    let stores = RaftStore::open(&dir, Options::default()).unwrap();
    println!("ready");
    rt.block_on(async {
        let mut tasks = Vec::new();
        for g in 0..GROUPS {
            let stores = stores.clone();
            let from = resume.get(&g).copied().unwrap_or(0);
            tasks.push(tokio::spawn(async move {
                let mut state = replay(g, 0, from, State::default());
                let mut log = stores.log_store::<TypeConfig>(g);
                for k in from + 1.. {
                    let op = next_op(g, k, &state);
                    match &op {
                        Op::Append(entries) => {
                            let batch = entries.iter().map(|(id, v)| entry(*id, v));
                            log.blocking_append(batch).await.unwrap();
                            println!("ack {g} {k}");
                        }
                        Op::Truncate(id) => log.truncate(*id).await.unwrap(),
                        Op::Purge(id) => log.purge(*id).await.unwrap(),
                        Op::Vote(v) => {
                            log.save_vote(v).await.unwrap();
                            println!("ack {g} {k}");
                        }
                    }
                    apply(&mut state, &op);
                }
            }));
        }
        for t in tasks {
            t.await.unwrap();
        }
    });
}

struct Child(std::process::Child);

impl Drop for Child {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Every append and vote acknowledged before a SIGKILL is in the store
/// after reopening, for each of 64 groups sharing it, and each group's log
/// is exactly the model after some prefix of its operations; eight kills
/// over the same store.
#[test]
fn groups_survive_sigkill() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("store");
    let mut rng = fastrand::Rng::with_seed(0x5EED);
    // Per group: the `k` the store was found at, and the state there.
    let mut found: Vec<(u64, State)> = vec![(0, State::default()); GROUPS as usize];
    let mut total_acks = 0;
    for kill in 0..KILLS {
        let resume: String = found
            .iter()
            .enumerate()
            .map(|(g, (k, _))| format!("{g}={k} "))
            .collect();
        let mut child = Command::new(std::env::current_exe().unwrap())
            .args([
                "child_groups",
                "--exact",
                "--ignored",
                "--nocapture",
                "--test-threads=1",
            ])
            .env(DIR_VAR, &dir)
            .env(RESUME_VAR, resume)
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap();
        let stdout = child.stdout.take().unwrap();
        let mut child = Child(child);
        let (tx, lines) = mpsc::channel::<String>();
        let reader = std::thread::spawn(move || {
            let mut stdout = BufReader::new(stdout);
            let mut line = Vec::new();
            // Only whole lines count; EOF comes when the child is dead.
            while stdout.read_until(b'\n', &mut line).unwrap_or(0) > 0 {
                if line.ends_with(b"\n") {
                    let _ = tx.send(String::from_utf8_lossy(&line).into_owned());
                }
                line.clear();
            }
        });
        let mut acked = vec![0u64; GROUPS as usize];
        let mut acks = 0;
        let wanted = 200 + rng.usize(0..800);
        let parse = |line: &str, acked: &mut Vec<u64>, acks: &mut usize| {
            let mut words = line.split_whitespace();
            if words.next() == Some("ack") {
                let g: usize = words.next().unwrap().parse().unwrap();
                let k: u64 = words.next().unwrap().parse().unwrap();
                acked[g] = acked[g].max(k);
                *acks += 1;
            }
        };
        while acks < wanted {
            let line = lines
                .recv_timeout(Duration::from_secs(120))
                .unwrap_or_else(|e| panic!("kill {kill}: child silent ({e})"));
            parse(&line, &mut acked, &mut acks);
        }
        assert!(
            child.0.try_wait().unwrap().is_none(),
            "kill {kill}: the child exited by itself (see its stderr)"
        );
        child.0.kill().unwrap(); // SIGKILL
        child.0.wait().unwrap();
        reader.join().unwrap();
        for line in lines.try_iter() {
            parse(&line, &mut acked, &mut acks);
        }
        total_acks += acks;

        let stores = RaftStore::open(&dir, Options::default()).unwrap();
        let rt = tokio::runtime::Runtime::new().unwrap();
        for g in 0..GROUPS {
            let got = rt.block_on(read(&stores, g));
            let (from, base) = &found[g as usize];
            let lowest = acked[g as usize].max(*from);
            let mut state = replay(g, *from, lowest, base.clone());
            let mut k = lowest;
            while state != got {
                assert!(
                    k < lowest + AHEAD,
                    "kill {kill}, group {g}: the store matches no state from operation \
                     {lowest} (last acknowledged {}) to {k}\nstore: {got:?}\nmodel at {lowest}: {:?}",
                    acked[g as usize],
                    replay(g, *from, lowest, base.clone()),
                );
                k += 1;
                let op = next_op(g, k, &state);
                apply(&mut state, &op);
            }
            found[g as usize] = (k, state);
        }
        stores.close().unwrap();
        println!("kill {kill}: {acks} acknowledgements, every group matched its model");
    }
    assert!(total_acks >= KILLS * 200);
}
