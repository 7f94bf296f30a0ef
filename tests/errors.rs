//! The error type's contract: `Display` shows one layer, `source()` yields
//! the wrapped error (the `io::Error` of `Error::Io`, the original failure
//! of `Error::WritesStopped`), clones share what they wrap, `DisplayChain`
//! prints every layer once, and the conversion to `io::Error` keeps the
//! kind and the chain.

use std::error::Error as _;
use std::io::{self, ErrorKind};
use std::path::PathBuf;
use std::sync::Arc;

use journalstore::io::{Fault, SimFs};
use journalstore::{DisplayChain, Error, Options, Store, SyncMode, WriteBatch};

/// The message `SimFs` gives a failed sync.
const SYNC_MESSAGE: &str = "simulated sync failure";

fn batch(n: u64) -> WriteBatch {
    let mut b = WriteBatch::new();
    b.append(b"j", format!("entry {n}").as_bytes());
    b
}

/// A store whose next segment sync fails: returns the failed write's error
/// and the error of the write after it.
fn failed_sync() -> (Error, Error) {
    let tmp = tempfile::tempdir().unwrap();
    let sim = SimFs::new();
    let opts = Options {
        sync: SyncMode::Always,
        background_compaction: false,
        fs: Arc::new(sim.clone()),
        ..Options::default()
    };
    let store = Store::open(tmp.path().join("store"), opts).unwrap();
    store.write(&batch(0)).unwrap();
    sim.inject(Fault::Sync {
        nth: 0,
        kind: ErrorKind::Other,
    });
    let first = store.write(&batch(1)).unwrap_err();
    let second = store.write(&batch(2)).unwrap_err();
    assert!(store.close().is_err(), "close after a failed sync");
    (first, second)
}

/// The number of times `needle` occurs in `hay`.
fn count(hay: &str, needle: &str) -> usize {
    hay.matches(needle).count()
}

#[test]
fn io_error_display_omits_the_source_which_source_yields() {
    let os = io::Error::from_raw_os_error(5);
    let os_text = os.to_string();
    let e = Error::Io {
        op: "write segment",
        path: PathBuf::from("/data/seg-00000001.jseg"),
        source: Arc::new(os),
    };
    let shown = e.to_string();
    assert!(shown.contains("write segment"), "{shown}");
    assert!(shown.contains("/data/seg-00000001.jseg"), "{shown}");
    assert!(
        !shown.contains(&os_text),
        "Display repeats the source: {shown}"
    );
    let source = e.source().expect("Io has a source");
    let source = source.downcast_ref::<io::Error>().expect("an io::Error");
    assert_eq!(source.raw_os_error(), Some(5));
    assert_eq!(source.to_string(), os_text);
    assert!(source.source().is_none());
}

#[test]
fn failed_sync_is_io_and_later_writes_stopped_carry_it_as_source() {
    let (first, second) = failed_sync();
    let Error::Io { op, source, .. } = &first else {
        panic!("the write whose sync failed: {first:?}");
    };
    assert_eq!(*op, "sync segment");
    assert_eq!(source.kind(), ErrorKind::Other);
    assert_eq!(source.to_string(), SYNC_MESSAGE);
    assert!(!first.to_string().contains(SYNC_MESSAGE), "{first}");

    let Error::WritesStopped { cause } = &second else {
        panic!("the write after the failed sync: {second:?}");
    };
    assert!(!second.to_string().contains("sync segment"), "{second}");
    // source() is the recorded failure itself, the same `Error::Io` the
    // failed write returned (printed the same, sharing its io::Error).
    let source = second.source().expect("WritesStopped has a source");
    assert!(std::ptr::addr_eq(source, Arc::as_ptr(cause)));
    let source = source
        .downcast_ref::<Error>()
        .expect("a journalstore Error");
    let Error::Io {
        source: inner_io, ..
    } = source
    else {
        panic!("the cause is not Error::Io: {source:?}");
    };
    assert_eq!(source.to_string(), first.to_string());
    let io = source.source().expect("the cause has a source");
    assert!(std::ptr::addr_eq(io, Arc::as_ptr(inner_io)));
    assert_eq!(io.to_string(), SYNC_MESSAGE);
    assert!(io.source().is_none());
}

#[test]
fn clones_print_the_same_and_share_their_sources() {
    let (first, second) = failed_sync();
    for e in [&first, &second] {
        let c = e.clone();
        assert_eq!(c.to_string(), e.to_string());
        assert_eq!(format!("{c:?}"), format!("{e:?}"));
        assert_eq!(DisplayChain(&c).to_string(), DisplayChain(e).to_string());
        let (a, b) = (e.source().unwrap(), c.source().unwrap());
        assert!(std::ptr::addr_eq(a, b), "the clone copied its source");
    }
}

#[test]
fn display_chain_prints_every_layer_once() {
    let (first, second) = failed_sync();
    let chain = DisplayChain(&second).to_string();
    let layers = [second.to_string(), first.to_string(), SYNC_MESSAGE.into()];
    assert_eq!(chain, layers.join(": "));
    for layer in &layers {
        assert_eq!(count(&chain, layer), 1, "{layer:?} in {chain:?}");
    }
    assert_eq!(count(&chain, "sync segment"), 1, "{chain}");

    // An error with no source prints alone.
    assert_eq!(DisplayChain(&Error::Closed).to_string(), "store is closed");
}

#[test]
fn into_io_error_keeps_the_kind_and_the_chain() {
    let (first, second) = failed_sync();
    let first_text = first.to_string();
    let first_chain = DisplayChain(&first).to_string();
    let io = io::Error::from(first);
    assert_eq!(io.kind(), ErrorKind::Other);
    let inner = io.get_ref().and_then(|e| e.downcast_ref::<Error>());
    assert!(matches!(inner, Some(Error::Io { .. })), "{io:?}");
    // The io::Error prints as the journalstore error and continues its
    // chain, so the OS text shows once.
    assert_eq!(io.to_string(), first_text);
    assert_eq!(DisplayChain(&io).to_string(), first_chain);

    let second_chain = DisplayChain(&second).to_string();
    let io = io::Error::from(second);
    assert_eq!(DisplayChain(&io).to_string(), second_chain);
    assert_eq!(count(&second_chain, SYNC_MESSAGE), 1, "{second_chain}");

    let io = io::Error::from(Error::Io {
        op: "open segment",
        path: PathBuf::from("seg"),
        source: Arc::new(io::Error::from(ErrorKind::NotFound)),
    });
    assert_eq!(io.kind(), ErrorKind::NotFound);
    assert_eq!(
        io::Error::from(Error::InvalidJournalId { len: 0 }).kind(),
        ErrorKind::InvalidInput
    );
}
