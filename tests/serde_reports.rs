//! With the `serde` feature, `Stats`, the compaction and checkpoint reports
//! and the `inspect` reports serialize with their field names. Run with
//! `cargo test --features serde --test serde_reports`.

use journalstore::{inspect, Options, Store, WriteBatch};

#[test]
fn reports_serialize() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("store");
    let store = Store::open(&dir, Options::default()).unwrap();
    let mut b = WriteBatch::new();
    b.append(b"j", b"e").set_metadata(b"j", b"m");
    store.write(&b).unwrap();
    let stats = serde_json::to_value(store.stats()).unwrap();
    assert_eq!(stats["journals"], 1);
    let compaction = serde_json::to_value(store.compact().unwrap()).unwrap();
    assert!(compaction["runs"].is_u64(), "{compaction}");
    let checkpoint =
        serde_json::to_value(store.checkpoint(tmp.path().join("ckpt")).unwrap()).unwrap();
    assert!(checkpoint.is_object(), "{checkpoint}");
    store.close().unwrap();
    let verify = serde_json::to_value(inspect::verify(&dir)).unwrap();
    assert_eq!(verify["problems"], serde_json::json!([]));
    assert!(verify["manifest"]["generation"].is_u64(), "{verify}");
    let salvage =
        serde_json::to_value(inspect::salvage(&dir, &tmp.path().join("out")).unwrap()).unwrap();
    assert_eq!(salvage["entries"], 1, "{salvage}");
    assert_eq!(salvage["lost_ranges"], serde_json::json!([]));
    let seg = inspect::segment_files(&dir).unwrap()[0].1.clone();
    let items = inspect::SegmentFile::read(&seg)
        .unwrap()
        .scan(0, None, false);
    let items = serde_json::to_value(items).unwrap();
    assert!(
        items
            .as_array()
            .unwrap()
            .iter()
            .any(|i| i.get("Record").is_some()),
        "{items}"
    );
}
