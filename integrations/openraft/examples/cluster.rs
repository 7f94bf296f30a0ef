//! Three openraft nodes in one process, each with its own journalstore
//! directory, talking over an in-process network (a shared table of the
//! running nodes; a stopped node is unreachable).
//!
//! Elects a leader, writes commands, stops a follower, writes more, has the
//! leader build a snapshot and purge its log behind it, restarts the stopped
//! node from its directory (it catches up by snapshot install plus log),
//! writes a few more, and checks that the three state machines are equal.
//! Exits non-zero if they differ or a step fails.
//!
//!     cargo run --release -p journalstore-openraft --example cluster

use std::collections::{BTreeMap, BTreeSet};
use std::future::Future;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use journalstore::Options;
use journalstore_openraft::kv::{KvStateMachine, NodeId, Request, TypeConfig};
use journalstore_openraft::RaftStore;
use openraft::error::{
    ClientWriteError, InstallSnapshotError, RPCError, RaftError, RemoteError, Unreachable,
};
use openraft::network::{RPCOption, RaftNetwork, RaftNetworkFactory};
use openraft::raft::{
    AppendEntriesRequest, AppendEntriesResponse, InstallSnapshotRequest, InstallSnapshotResponse,
    VoteRequest, VoteResponse,
};
use openraft::{BasicNode, Config, Raft, ServerState, SnapshotPolicy};

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// The Raft group of the example (one group per store here; a store can
/// hold many).
const GROUP: u64 = 1;
/// Commands before the follower stops, while it is stopped, and after it
/// is back.
const PHASES: [u64; 3] = [3000, 2000, 500];
/// Clients writing at once.
const CLIENTS: u64 = 32;
/// Guard against a hang: no step waits longer (a step normally takes
/// milliseconds; waiting is on conditions, never on time).
const STEP_LIMIT: Duration = Duration::from_secs(120);

/// The running nodes, by id: the in-process network.
#[derive(Clone, Default)]
struct Router {
    nodes: Arc<Mutex<BTreeMap<NodeId, Raft<TypeConfig>>>>,
}

impl Router {
    fn get(&self, id: NodeId) -> Option<Raft<TypeConfig>> {
        self.nodes.lock().unwrap().get(&id).cloned()
    }
}

struct Connection {
    router: Router,
    target: NodeId,
}

fn unreachable<E: std::error::Error>(target: NodeId) -> RPCError<NodeId, BasicNode, E> {
    let e = std::io::Error::new(
        std::io::ErrorKind::NotConnected,
        format!("node {target} is down"),
    );
    RPCError::Unreachable(Unreachable::new(&e))
}

impl RaftNetworkFactory<TypeConfig> for Router {
    type Network = Connection;

    async fn new_client(&mut self, target: NodeId, _node: &BasicNode) -> Connection {
        Connection {
            router: self.clone(),
            target,
        }
    }
}

impl RaftNetwork<TypeConfig> for Connection {
    async fn append_entries(
        &mut self,
        rpc: AppendEntriesRequest<TypeConfig>,
        _option: RPCOption,
    ) -> Result<AppendEntriesResponse<NodeId>, RPCError<NodeId, BasicNode, RaftError<NodeId>>> {
        let raft = self
            .router
            .get(self.target)
            .ok_or_else(|| unreachable(self.target))?;
        raft.append_entries(rpc)
            .await
            .map_err(|e| RPCError::RemoteError(RemoteError::new(self.target, e)))
    }

    async fn install_snapshot(
        &mut self,
        rpc: InstallSnapshotRequest<TypeConfig>,
        _option: RPCOption,
    ) -> Result<
        InstallSnapshotResponse<NodeId>,
        RPCError<NodeId, BasicNode, RaftError<NodeId, InstallSnapshotError>>,
    > {
        let raft = self
            .router
            .get(self.target)
            .ok_or_else(|| unreachable(self.target))?;
        raft.install_snapshot(rpc)
            .await
            .map_err(|e| RPCError::RemoteError(RemoteError::new(self.target, e)))
    }

    async fn vote(
        &mut self,
        rpc: VoteRequest<NodeId>,
        _option: RPCOption,
    ) -> Result<VoteResponse<NodeId>, RPCError<NodeId, BasicNode, RaftError<NodeId>>> {
        let raft = self
            .router
            .get(self.target)
            .ok_or_else(|| unreachable(self.target))?;
        raft.vote(rpc)
            .await
            .map_err(|e| RPCError::RemoteError(RemoteError::new(self.target, e)))
    }
}

/// A running node: its Raft, its store and (a handle on) its state machine.
struct Node {
    raft: Raft<TypeConfig>,
    stores: RaftStore,
    sm: KvStateMachine,
}

async fn start(id: NodeId, dir: &Path, router: &Router) -> Result<Node, BoxError> {
    let config = Config {
        cluster_name: "journalstore-example".into(),
        // Long election timeouts: a loaded machine (CI) should not delay
        // heartbeats enough to move leadership (writes would follow a new
        // leader, but the snapshot step below expects the one that purged).
        heartbeat_interval: 100,
        election_timeout_min: 1500,
        election_timeout_max: 3000,
        // Snapshots only when asked, and the log purged right up to them,
        // so that the restarted node must install one.
        snapshot_policy: SnapshotPolicy::Never,
        max_in_snapshot_log_to_keep: 0,
        purge_batch_size: 1,
        ..Config::default()
    };
    let stores = RaftStore::open(dir, Options::default())?;
    let log = stores.log_store::<TypeConfig>(GROUP);
    let sm = stores.state_machine(GROUP)?;
    let raft = Raft::new(
        id,
        Arc::new(config.validate()?),
        router.clone(),
        log,
        sm.clone(),
    )
    .await?;
    router.nodes.lock().unwrap().insert(id, raft.clone());
    Ok(Node { raft, stores, sm })
}

async fn stop(id: NodeId, node: Node, router: &Router) -> Result<(), BoxError> {
    router.nodes.lock().unwrap().remove(&id);
    node.raft.shutdown().await?;
    node.stores.close()?;
    Ok(())
}

/// Waits for `f`, failing after [`STEP_LIMIT`].
async fn step<T>(what: &str, f: impl Future<Output = T>) -> Result<T, BoxError> {
    tokio::time::timeout(STEP_LIMIT, f)
        .await
        .map_err(|_| format!("{what}: not done after {STEP_LIMIT:?}").into())
}

/// Writes one command through node `leader`, following the cluster to a
/// new leader if leadership moved; returns the node that took it.
async fn client_write(
    router: &Router,
    mut leader: NodeId,
    request: Request,
) -> Result<NodeId, BoxError> {
    loop {
        let raft = router.get(leader).ok_or("the leader is down")?;
        match raft.client_write(request.clone()).await {
            Ok(_) => return Ok(leader),
            Err(RaftError::APIError(ClientWriteError::ForwardToLeader(f))) => {
                leader = match f.leader_id {
                    Some(id) => id,
                    None => raft
                        .wait(Some(STEP_LIMIT))
                        .metrics(|m| m.current_leader.is_some(), "a new leader")
                        .await?
                        .current_leader
                        .ok_or("no leader")?,
                };
            }
            Err(e) => return Err(e.into()),
        }
    }
}

/// Writes commands `from..to` through the leader from [`CLIENTS`] clients;
/// returns the rate in commands per second.
async fn write(router: &Router, leader: NodeId, from: u64, to: u64) -> Result<f64, BoxError> {
    let started = Instant::now();
    let mut clients = Vec::new();
    for c in 0..CLIENTS {
        let router = router.clone();
        clients.push(tokio::spawn(async move {
            let mut leader = leader;
            let mut i = from + c;
            while i < to {
                let request = Request::Set {
                    key: format!("key-{:04}", i % 4000),
                    value: format!("value-{i}"),
                };
                leader = client_write(&router, leader, request).await?;
                i += CLIENTS;
            }
            Ok::<_, BoxError>(())
        }));
    }
    for client in clients {
        client.await??;
    }
    Ok((to - from) as f64 / started.elapsed().as_secs_f64())
}

async fn run() -> Result<bool, BoxError> {
    let tmp = tempfile::tempdir()?;
    let dirs: BTreeMap<NodeId, PathBuf> = (1..=3)
        .map(|id| (id, tmp.path().join(format!("node-{id}"))))
        .collect();
    let router = Router::default();
    let mut nodes = BTreeMap::new();
    for (&id, dir) in &dirs {
        nodes.insert(id, start(id, dir, &router).await?);
    }

    let members: BTreeMap<NodeId, BasicNode> =
        (1..=3).map(|id| (id, BasicNode::default())).collect();
    nodes[&1].raft.initialize(members).await?;
    let metrics = step(
        "election",
        nodes[&1]
            .raft
            .wait(None)
            .metrics(|m| m.current_leader.is_some(), "a leader"),
    )
    .await??;
    let leader_id = metrics.current_leader.ok_or("no leader")?;
    println!(
        "elected: node {leader_id} leads term {}",
        metrics.current_term
    );
    let leader = nodes[&leader_id].raft.clone();

    let [first, second, third] = PHASES;
    let rate = step("first writes", write(&router, leader_id, 0, first)).await??;
    println!("wrote {first} commands through the leader, 3 nodes up: {rate:.0} commands/s");

    let stopped = *dirs
        .keys()
        .find(|&&id| id != leader_id)
        .ok_or("no follower")?;
    let node = nodes.remove(&stopped).ok_or("no such node")?;
    stop(stopped, node, &router).await?;
    println!("stopped node {stopped} (store closed)");

    let rate = step(
        "second writes",
        write(&router, leader_id, first, first + second),
    )
    .await??;
    println!("wrote {second} commands, 2 nodes up: {rate:.0} commands/s");

    leader.trigger().snapshot().await?;
    let m = step(
        "snapshot",
        leader.wait(None).metrics(
            |m| m.snapshot.map(|s| s.index) == m.last_applied.map(|a| a.index),
            "snapshot at last applied",
        ),
    )
    .await??;
    let snapshot = m.snapshot.ok_or("no snapshot")?;
    leader.trigger().purge_log(snapshot.index).await?;
    step(
        "purge",
        leader.wait(None).metrics(
            |m| m.purged.map(|p| p.index) >= Some(snapshot.index),
            "log purged up to the snapshot",
        ),
    )
    .await??;
    println!("leader built a snapshot at {snapshot} and purged its log up to it");
    // The other running node does the same, so that whichever node leads
    // when the stopped one comes back no longer holds the entries it
    // misses: it must install a snapshot.
    for (id, node) in nodes.iter().filter(|(id, _)| **id != leader_id) {
        node.raft.trigger().snapshot().await?;
        let m = step(
            "follower snapshot",
            node.raft.wait(None).metrics(
                |m| {
                    m.snapshot.is_some()
                        && m.snapshot.map(|s| s.index) == m.last_applied.map(|a| a.index)
                },
                "snapshot at last applied",
            ),
        )
        .await??;
        let at = m.snapshot.ok_or("no snapshot")?;
        node.raft.trigger().purge_log(at.index).await?;
        step(
            "follower purge",
            node.raft.wait(None).metrics(
                |m| m.purged.map(|p| p.index) >= Some(at.index),
                "log purged up to the snapshot",
            ),
        )
        .await??;
        println!("node {id} built a snapshot at {at} and purged its log up to it");
    }

    let node = start(stopped, &dirs[&stopped], &router).await?;
    let before = node.sm.last_applied();
    println!(
        "restarted node {stopped} from its directory (state machine rebuilt from its own snapshot and log up to {})",
        before.map_or("nothing".into(), |l| l.to_string())
    );
    nodes.insert(stopped, node);

    let rate = step(
        "third writes",
        write(&router, leader_id, first + second, first + second + third),
    )
    .await??;
    println!("wrote {third} commands, 3 nodes up: {rate:.0} commands/s");

    let last = leader.metrics().borrow().last_log_index;
    for (id, node) in &nodes {
        step(
            "catch up",
            node.raft.wait(None).metrics(
                |m| m.last_applied.map(|l| l.index) >= last,
                "applied everything",
            ),
        )
        .await??;
        let m = node.raft.metrics().borrow().clone();
        println!(
            "node {id}: {:?}, applied {}, snapshot {}, purged {}",
            m.state,
            m.last_applied.map_or("-".into(), |l| l.to_string()),
            m.snapshot.map_or("-".into(), |l| l.to_string()),
            m.purged.map_or("-".into(), |l| l.to_string()),
        );
    }
    let restarted = nodes[&stopped].raft.metrics().borrow().clone();
    // Installed: a snapshot beyond anything it applied before it stopped
    // (it never built one itself: snapshots are only taken when asked).
    let installed = restarted.snapshot.map(|s| s.index) > before.map(|l| l.index);
    println!(
        "node {stopped} caught up by snapshot install plus log: {}",
        if installed { "yes" } else { "NO" }
    );
    if restarted.state == ServerState::Leader {
        return Err("the restarted node took over unexpectedly".into());
    }

    let data: Vec<BTreeMap<String, String>> = nodes.values().map(|n| n.sm.data()).collect();
    let keys: BTreeSet<usize> = data.iter().map(|d| d.len()).collect();
    let equal = data.windows(2).all(|w| w[0] == w[1]);
    println!(
        "state machines: {} keys each ({keys:?}), equal: {equal}",
        data[0].len()
    );
    for (id, node) in nodes {
        stop(id, node, &router).await?;
    }
    Ok(equal && installed)
}

fn main() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("tokio runtime");
    match rt.block_on(run()) {
        Ok(true) => println!("ok"),
        Ok(false) => {
            eprintln!("FAILED: the state machines differ or the restarted node did not install the snapshot");
            std::process::exit(1);
        }
        Err(e) => {
            eprintln!("FAILED: {e}");
            std::process::exit(2);
        }
    }
}
