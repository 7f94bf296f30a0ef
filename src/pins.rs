//! The pin registry: which versions live snapshots hold, taken and dropped
//! without touching memory that other reader threads write.
//!
//! A snapshot holds an `Arc<Pin>`; a pin holds one `Arc<Version>`. Pins
//! live in shards, one per reader thread in the common case (threads are
//! assigned round-robin, `PIN_SHARDS` of them), so taking a snapshot locks
//! the calling thread's shard and clones a pin only that thread touches.
//! Every snapshot taken on one thread of one version shares one pin: the
//! version's own reference count, which every reader would otherwise
//! increment and decrement on one cache line, moves once per version per
//! shard.
//!
//! A pin is *busy* while a snapshot holds it (its reference count is above
//! the shard's one) and *idle* otherwise. Invariants:
//! - A pin's count rises from the shard's one only under the shard's lock
//!   (a snapshot is taken) or by cloning a snapshot that holds it; so under
//!   the lock, an idle pin stays idle and can be removed.
//! - An idle pin is kept only while it holds the latest published version
//!   (`Registry::current`), so that the next snapshot on its thread finds
//!   it. It is removed when its last snapshot drops if a newer version was
//!   published by then, when a new pin is made in its shard, and by
//!   `Pins::published` in every shard when the published version's
//!   generation changes (so an idle reader thread never keeps a freed
//!   segment's file) or every `SWEEP_EVERY` publishes (so it keeps no old
//!   index for long).
//! - Removed pins are dropped outside the shard's lock, and outside the
//!   writer's lock (`Retired`): the last reference to a version may free
//!   index nodes and segment files.

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::manifest::Generation;
use crate::mutex::lock;
use crate::version::Version;

/// Shards of the registry.
const PIN_SHARDS: usize = 32;

/// `Pins::published` removes idle pins of replaced versions at least this
/// often (in publishes), whatever the generation does.
const SWEEP_EVERY: u64 = 256;

/// The pins of one shard (a handful: the busy ones and at most one idle).
/// On a cache line (two, for the adjacent-line prefetcher) of its own.
#[derive(Debug, Default)]
#[repr(align(128))]
struct Shard(Mutex<Vec<Arc<Pin>>>);

#[derive(Debug)]
struct Registry {
    /// Each shard is reached by its pins through an `Arc` of its own, whose
    /// count only the shard's thread moves in the common case.
    shards: [Arc<Shard>; PIN_SHARDS],
    /// The address of the latest published version: compared, never
    /// dereferenced. An idle pin holding another version is stale. (A pin
    /// keeps its version alive, so no newer version can reuse the address
    /// of a version a pin holds.)
    current: AtomicUsize,
    /// Publishes since the registry was made (`SWEEP_EVERY`).
    publishes: AtomicU64,
    /// The origin of `Pin::busy_since`.
    origin: Instant,
}

/// One version held for the snapshots of one shard.
#[derive(Debug)]
pub(crate) struct Pin {
    pub version: Arc<Version>,
    registry: Arc<Registry>,
    shard: Arc<Shard>,
    /// Nanoseconds from `Registry::origin` to when the pin last became
    /// busy (written under the shard's lock).
    busy_since: AtomicU64,
}

impl Pin {
    fn is_idle(this: &Arc<Pin>) -> bool {
        Arc::strong_count(this) == 1
    }

    fn is_current(&self) -> bool {
        Arc::as_ptr(&self.version) as usize == self.registry.current.load(Ordering::Acquire)
    }

    fn mark_busy(&self) {
        let since = self.registry.origin.elapsed().as_nanos();
        self.busy_since
            .store(u64::try_from(since).unwrap_or(u64::MAX), Ordering::Relaxed);
    }
}

/// One busy pin, as `Store::stats` sees it.
#[derive(Debug)]
pub(crate) struct LivePin {
    /// When the pin last became busy: no snapshot holding it is older.
    pub busy_since: Instant,
    pub generation: Arc<Generation>,
    /// The snapshots holding it.
    pub snapshots: usize,
}

/// The store's pin registry. Dropping it empties every shard: a shard
/// holds its pins and a pin refers to its shard and the registry, a cycle
/// this breaks. Snapshots still alive keep their pins, and through them the
/// registry, until they drop.
#[derive(Debug)]
pub(crate) struct Pins {
    registry: Arc<Registry>,
}

impl Default for Pins {
    fn default() -> Pins {
        Pins {
            registry: Arc::new(Registry {
                shards: Default::default(),
                current: AtomicUsize::new(0),
                publishes: AtomicU64::new(0),
                origin: Instant::now(),
            }),
        }
    }
}

/// The calling thread's shard.
fn own_shard() -> usize {
    static NEXT: AtomicUsize = AtomicUsize::new(0);
    thread_local! {
        static SHARD: usize = NEXT.fetch_add(1, Ordering::Relaxed) % PIN_SHARDS;
    }
    SHARD.with(|s| *s)
}

impl Pins {
    /// A pin on `version` for a new snapshot: the calling thread's pin on
    /// it if there is one, else a new one.
    pub fn pin(&self, version: &Arc<Version>) -> Arc<Pin> {
        let shard = &self.registry.shards[own_shard()];
        let mut pins = lock(&shard.0);
        if let Some(pin) = pins.iter().find(|p| Arc::ptr_eq(&p.version, version)) {
            if Pin::is_idle(pin) {
                pin.mark_busy();
            }
            return pin.clone();
        }
        // The shard's idle pin, if any, holds an older version.
        let idle: Vec<Arc<Pin>> = pins.extract_if(.., |p| Pin::is_idle(p)).collect();
        let pin = Arc::new(Pin {
            version: version.clone(),
            registry: self.registry.clone(),
            shard: shard.clone(),
            busy_since: AtomicU64::new(0),
        });
        pin.mark_busy();
        pins.push(pin.clone());
        drop(pins);
        drop(idle);
        pin
    }

    /// Records `version` as the latest published, `previous` as the one it
    /// replaces; returns the versions of the idle pins it removed, to be
    /// dropped outside the writer's lock.
    pub fn published(&self, version: &Arc<Version>, previous: &Version) -> Vec<Arc<Version>> {
        let registry = &self.registry;
        registry
            .current
            .store(Arc::as_ptr(version) as usize, Ordering::Release);
        let publishes = registry.publishes.fetch_add(1, Ordering::Relaxed) + 1;
        if Arc::ptr_eq(&version.generation, &previous.generation)
            && !publishes.is_multiple_of(SWEEP_EVERY)
        {
            return Vec::new();
        }
        let mut released = Vec::new();
        for shard in &registry.shards {
            let mut pins = lock(&shard.0);
            released.extend(
                pins.extract_if(.., |p| Pin::is_idle(p) && !p.is_current())
                    .map(|p| p.version.clone()),
            );
        }
        released
    }

    /// The busy pins at one point: every shard is locked (in order, the
    /// only place that holds more than one) before any is read.
    pub fn live(&self) -> Vec<LivePin> {
        let shards: Vec<_> = self.registry.shards.iter().map(|s| lock(&s.0)).collect();
        let origin = self.registry.origin;
        shards
            .iter()
            .flat_map(|pins| pins.iter())
            .filter(|p| !Pin::is_idle(p))
            .map(|p| LivePin {
                busy_since: origin + Duration::from_nanos(p.busy_since.load(Ordering::Relaxed)),
                generation: p.version.generation.clone(),
                // The shard's reference is not a snapshot's.
                snapshots: Arc::strong_count(p) - 1,
            })
            .collect()
    }
}

impl Drop for Pins {
    fn drop(&mut self) {
        for shard in &self.registry.shards {
            let idle: Vec<Arc<Pin>> = lock(&shard.0).drain(..).collect();
            drop(idle);
        }
    }
}

/// Gives a snapshot's reference to `pin` back; removes the pin if that was
/// its last snapshot and a newer version has been published.
pub(crate) fn unpin(pin: Arc<Pin>) {
    let shard = pin.shard.clone();
    let mut pins = lock(&shard.0);
    // Dropped under the lock: a pin's count falls to the shard's one only
    // where `pin` and `published` can see it. (Not the last reference while
    // the shard holds the pin; after `Pins` dropped, it may be.)
    drop(pin);
    let stale: Vec<Arc<Pin>> = pins
        .extract_if(.., |p| Pin::is_idle(p) && !p.is_current())
        .collect();
    drop(pins);
    drop(stale);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::index::Index;

    fn version(lsn: u64, generation: &Arc<Generation>) -> Arc<Version> {
        Arc::new(Version {
            lsn,
            index: Index::default(),
            generation: generation.clone(),
            active_end: 0,
        })
    }

    /// Snapshots of one version on one thread share one pin: the version's
    /// own count moves once, not per snapshot; the pin stays (idle) while
    /// its version is the latest, and the next snapshot reuses it.
    #[test]
    fn snapshots_on_one_thread_share_one_pin() {
        let pins = Pins::default();
        let g = Arc::new(Generation::new(1, Vec::new()));
        let v1 = version(1, &g);
        let _ = pins.published(&v1, &v1);
        let (a, b) = (pins.pin(&v1), pins.pin(&v1));
        assert!(Arc::ptr_eq(&a, &b));
        assert_eq!(Arc::strong_count(&v1), 2, "the caller's and the pin's");
        let live = pins.live();
        assert_eq!((live.len(), live[0].snapshots), (1, 2));
        unpin(a);
        unpin(b);
        assert!(pins.live().is_empty(), "an idle pin is no live snapshot");
        assert_eq!(
            Arc::strong_count(&v1),
            2,
            "the idle pin of the latest stays"
        );
        let c = pins.pin(&v1);
        assert_eq!(Arc::strong_count(&v1), 2, "and is taken again");
        unpin(c);
    }

    /// A pin whose version was replaced goes with its last snapshot; an
    /// idle pin goes when a newer version is pinned in its shard.
    #[test]
    fn a_replaced_version_is_released_by_its_last_snapshot() {
        let pins = Pins::default();
        let g = Arc::new(Generation::new(1, Vec::new()));
        let (v1, v2, v3) = (version(1, &g), version(2, &g), version(3, &g));
        let _ = pins.published(&v1, &v1);
        let a = pins.pin(&v1);
        let _ = pins.published(&v2, &v1);
        assert_eq!(Arc::strong_count(&v1), 2, "busy: kept");
        unpin(a);
        assert_eq!(Arc::strong_count(&v1), 1, "released with its last snapshot");
        unpin(pins.pin(&v2));
        assert_eq!(Arc::strong_count(&v2), 2, "idle pin of the latest");
        let _ = pins.published(&v3, &v2);
        let c = pins.pin(&v3);
        assert_eq!(Arc::strong_count(&v2), 1, "replaced by the shard's new pin");
        unpin(c);
    }

    /// A new generation releases the idle pins of every shard (an idle
    /// reader thread keeps no freed segment), and the release is handed
    /// to the publisher, not dropped under the shard's lock.
    #[test]
    fn a_new_generation_releases_idle_pins_of_every_thread() {
        let pins = Arc::new(Pins::default());
        let (g1, g2) = (
            Arc::new(Generation::new(1, Vec::new())),
            Arc::new(Generation::new(2, Vec::new())),
        );
        let (v1, v2) = (version(1, &g1), version(2, &g2));
        let _ = pins.published(&v1, &v1);
        let (idle, busy) = {
            let (pins, v1) = (pins.clone(), v1.clone());
            std::thread::spawn(move || {
                unpin(pins.pin(&v1));
                let busy = Held(Some(pins.pin(&v1)));
                (Arc::strong_count(&v1), busy)
            })
            .join()
            .unwrap()
        };
        assert_eq!(
            idle, 3,
            "one pin on the other thread, besides v1 and its clone"
        );
        let released = pins.published(&v2, &v1);
        assert!(released.is_empty(), "the other thread's pin is busy");
        drop(busy);
        assert_eq!(Arc::strong_count(&v1), 1, "released with its last snapshot");

        {
            let (pins, v2) = (pins.clone(), v2.clone());
            std::thread::spawn(move || unpin(pins.pin(&v2)))
                .join()
                .unwrap();
        }
        assert_eq!(Arc::strong_count(&v2), 2, "the other thread's idle pin");
        let v3 = version(3, &g2);
        assert!(
            pins.published(&v3, &v2).is_empty(),
            "same generation: no sweep before SWEEP_EVERY publishes"
        );
        let v4 = version(4, &Arc::new(Generation::new(3, Vec::new())));
        let released = pins.published(&v4, &v3);
        assert_eq!(released.len(), 1);
        assert!(Arc::ptr_eq(&released[0], &v2));
        drop(released);
        assert_eq!(Arc::strong_count(&v2), 1, "the test's only");
    }

    /// Holds a pin as a snapshot does, giving it back on drop.
    struct Held(Option<Arc<Pin>>);

    impl Drop for Held {
        fn drop(&mut self) {
            if let Some(pin) = self.0.take() {
                unpin(pin);
            }
        }
    }
}
