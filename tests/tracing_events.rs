//! With the `tracing` feature, what the store does out of the caller's
//! sight is reported as `tracing` events: a background compaction whose
//! copy fails (an injected write error), a failed background sync, an
//! orphan segment removed at open; seen by a subscriber the tests install. Run with `cargo test --features tracing --test
//! tracing_events`.

use std::io::ErrorKind;
use std::sync::{Arc, Condvar, Mutex};
use std::time::Duration;

use journalstore::io::{Fault, SimFs};
use journalstore::{Options, Store, SyncMode, WriteBatch};
use tracing::field::{Field, Visit};
use tracing::span::{Attributes, Id, Record};
use tracing::{Event, Level, Metadata, Subscriber};

/// One event as seen: level, target, message and the other fields.
#[derive(Debug, Clone)]
struct Seen {
    level: Level,
    target: String,
    message: String,
    fields: String,
}

#[derive(Default)]
struct Log {
    events: Mutex<Vec<Seen>>,
    changed: Condvar,
}

/// A subscriber that records every event and has no spans.
struct Collect(Arc<Log>);

struct Fields<'a>(&'a mut String, &'a mut String);
impl Visit for Fields<'_> {
    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        if field.name() == "message" {
            *self.0 = format!("{value:?}");
        } else {
            self.1.push_str(&format!("{}={value:?} ", field.name()));
        }
    }
}

impl Subscriber for Collect {
    fn enabled(&self, _: &Metadata<'_>) -> bool {
        true
    }
    fn new_span(&self, _: &Attributes<'_>) -> Id {
        Id::from_u64(1)
    }
    fn record(&self, _: &Id, _: &Record<'_>) {}
    fn record_follows_from(&self, _: &Id, _: &Id) {}
    fn event(&self, event: &Event<'_>) {
        let (mut message, mut fields) = (String::new(), String::new());
        event.record(&mut Fields(&mut message, &mut fields));
        let seen = Seen {
            level: *event.metadata().level(),
            target: event.metadata().target().to_owned(),
            message,
            fields,
        };
        self.0.events.lock().unwrap().push(seen);
        self.0.changed.notify_all();
    }
    fn enter(&self, _: &Id) {}
    fn exit(&self, _: &Id) {}
}

fn options(sim: &SimFs, background: bool) -> Options {
    Options {
        sync: SyncMode::Never,
        segment_size: 64 << 10,
        background_compaction: background,
        stall_space_amplification: None,
        status_interval: None,
        fs: Arc::new(sim.clone()),
        ..Options::default()
    }
}

/// A background compaction whose copy fails: the subscriber sees the
/// copy's failure (WARN) and the background run's (ERROR), both naming the
/// injected error, with target `journalstore`.
/// The one global subscriber of this test binary (events of background
/// threads reach only a global one).
fn log() -> Arc<Log> {
    static LOG: std::sync::OnceLock<Arc<Log>> = std::sync::OnceLock::new();
    LOG.get_or_init(|| {
        let log = Arc::new(Log::default());
        tracing::subscriber::set_global_default(Collect(log.clone())).expect("first subscriber");
        log
    })
    .clone()
}

/// Waits until an event satisfies `want` (a minute at most, as a bound on
/// a hang, not as synchronisation); returns every event seen.
fn wait_for(log: &Log, want: impl Fn(&Seen) -> bool) -> Vec<Seen> {
    let guard = log.events.lock().unwrap();
    let (guard, timeout) = log
        .changed
        .wait_timeout_while(guard, Duration::from_secs(60), |events| {
            !events.iter().any(&want)
        })
        .unwrap();
    assert!(!timeout.timed_out(), "no such event: {:#?}", *guard);
    guard.clone()
}

/// A failed sync of the `SyncMode::Interval` thread is an ERROR event.
#[test]
fn a_failed_background_sync_is_reported() {
    let log = log();
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("store");
    let sim = SimFs::new();
    let store = Store::open(
        &dir,
        Options {
            sync: SyncMode::Interval(Duration::from_millis(20)),
            ..options(&sim, false)
        },
    )
    .unwrap();
    sim.inject(Fault::Sync {
        nth: 0,
        kind: ErrorKind::Other,
    });
    let mut b = WriteBatch::new();
    b.append(b"j", b"unsynced");
    store.write(&b).unwrap();
    let events = wait_for(&log, |e| e.message.contains("background sync failed"));
    let e = events
        .iter()
        .find(|e| e.message.contains("background sync failed"))
        .unwrap();
    assert_eq!(e.level, Level::ERROR);
    assert!(e.fields.contains("error="), "{e:?}");
    drop(store);
}

/// A segment file the manifest does not list is removed at open, with an
/// INFO event naming it.
#[test]
fn an_orphan_removed_at_open_is_reported() {
    let log = log();
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("store");
    let sim = SimFs::new();
    let store = Store::open(&dir, options(&sim, false)).unwrap();
    store.close().unwrap();
    drop(store);
    let orphan = dir.join("seg-000000fe.jseg");
    std::fs::write(&orphan, [0u8; 64]).unwrap();
    let store = Store::open(&dir, options(&sim, false)).unwrap();
    assert!(!orphan.exists());
    let events = wait_for(&log, |e| {
        e.message.contains("orphan") && e.fields.contains("seg-000000fe.jseg")
    });
    assert!(events
        .iter()
        .any(|e| e.level == Level::INFO && e.target == "journalstore"));
    store.close().unwrap();
}

#[test]
fn a_failed_background_compaction_is_reported() {
    let log = log();
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("store");
    let sim = SimFs::new();
    // Segments that are mostly dead (journals deleted) but hold a live
    // journal, so that compaction must copy.
    let store = Store::open(&dir, options(&sim, false)).unwrap();
    for i in 0..2000u64 {
        let mut b = WriteBatch::new();
        b.append(format!("j{}", i % 20).as_bytes(), &[i as u8; 200]);
        if i % 10 == 0 {
            b.append(b"keep", b"live");
        }
        if i % 100 == 99 {
            for j in 0..20 {
                b.delete_journal(format!("j{j}").as_bytes());
            }
        }
        store.write(&b).unwrap();
    }
    store.close().unwrap();
    drop(store);
    let store = Store::open(&dir, options(&sim, true)).unwrap();
    // The compaction thread first looks for work one check interval after
    // open; the fault is armed before that.
    sim.inject(Fault::Write {
        nth: 0,
        kind: ErrorKind::StorageFull,
    });
    let failed = |e: &Seen| e.message.contains("background compaction failed");
    let events = wait_for(&log, failed);
    let copy = events
        .iter()
        .find(|e| e.message.contains("compaction copy failed"))
        .unwrap_or_else(|| panic!("{events:#?}"));
    assert_eq!(copy.level, Level::WARN);
    assert_eq!(copy.target, "journalstore");
    let bg = events.iter().find(|e| failed(e)).unwrap();
    assert_eq!(bg.level, Level::ERROR);
    assert!(bg.fields.contains("error="), "{bg:?}");
    assert!(copy.fields.contains("error="), "{copy:?}");
    // The store stays writable: the copy's failure stops nothing.
    let mut b = WriteBatch::new();
    b.append(b"keep", b"after");
    store.write(&b).unwrap();
    store.close().unwrap();
}
