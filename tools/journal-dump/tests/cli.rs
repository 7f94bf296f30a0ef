//! `journal-dump` end to end, through its binary: every command on a real
//! store, on a store another process holds open, on damaged copies (bit
//! flip, torn tail, missing segment, junk files, a value whose own checksum
//! fails, a lost segment the manifest no longer lists), and on random
//! garbage. The tool must never panic, never change a byte of the store,
//! exit 0 only when everything it read was intact, and otherwise name the
//! file and offset of each problem while printing what it can.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, ChildStdout, Stdio};

use assert_cmd::Command;
use journalstore::inspect::{self, ScanItem, SegmentFile};
use journalstore::{Error, Options, Store, SyncMode, WriteBatch};
use serde_json::Value;

const NON_UTF8_ID: &[u8] = &[0xff, 0x00, b'j'];

/// Options for the test stores: small segments so that a few hundred
/// batches roll through several of them, and no background compaction and
/// no status thread, so that a store left open changes only when the test
/// writes (`STATUS` is written only at open and close). No index
/// checkpoints (the index checkpoint tests ask for them): the tests make
/// crash states (torn tails, damage) out of cleanly closed stores, and a
/// crash leaves no checkpoint covering what it tore, while one written at
/// clean close would cover every record and keep open from reading them.
fn options() -> Options {
    Options {
        sync: SyncMode::Always,
        segment_size: 8192,
        background_compaction: false,
        status_interval: Some(std::time::Duration::from_secs(3600)),
        index_checkpoint_bytes: None,
        ..Options::default()
    }
}

/// A journal as the test expects to read it back.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
struct Expected {
    first: u64,
    entries: Vec<Vec<u8>>,
    /// `None`: never set, or cleared.
    metadata: Option<Vec<u8>>,
}

type State = BTreeMap<Vec<u8>, Expected>;

fn entry(journal: &str, i: u64) -> Vec<u8> {
    let mut v = format!("{journal} entry {i} ").into_bytes();
    v.resize(150, b'.');
    v
}

/// Writes a store that exercises every operation kind, several segments, a
/// freed segment (a deleted journal that filled it), metadata-only and
/// non-UTF-8 journals and an empty entry. Returns the final state.
fn build_store(dir: &Path) -> State {
    let store = Store::open(dir, options()).expect("open");
    let mut state = State::new();
    let write = |b: &WriteBatch| {
        store.write(b).expect("write");
    };
    // Fills more than a segment; deleted below, so segment 1 is freed.
    for i in 0..60 {
        let mut b = WriteBatch::new();
        b.append(b"tmp", &entry("tmp", i));
        write(&b);
    }
    let mut b = WriteBatch::new();
    b.append(b"alpha", &entry("alpha", 0))
        .set_metadata(b"alpha", b"m1")
        .append(NON_UTF8_ID, &[0, 1, 2, 0xff])
        .set_metadata(NON_UTF8_ID, &[0xfe; 3]);
    write(&b);
    for i in 1..40 {
        let mut b = WriteBatch::new();
        b.append(b"alpha", &entry("alpha", i));
        if i % 5 == 0 {
            b.append(b"beta", &entry("beta", i / 5 - 1));
        }
        write(&b);
    }
    let mut b = WriteBatch::new();
    b.delete_journal(b"tmp").delete_journal(b"beta");
    write(&b);
    let mut b = WriteBatch::new();
    b.trim_prefix(b"alpha", 5)
        .truncate(b"alpha", 35)
        .set_metadata(b"alpha", b"m2");
    write(&b);
    let mut b = WriteBatch::new();
    b.set_metadata(b"meta-only", b"just metadata")
        .append(b"gamma", b"");
    write(&b);
    for i in 0..3 {
        let mut b = WriteBatch::new();
        b.append(b"delta", &entry("delta", i));
        write(&b);
    }
    store.close().expect("close");

    state.insert(
        b"alpha".to_vec(),
        Expected {
            first: 5,
            entries: (5..35).map(|i| entry("alpha", i)).collect(),
            metadata: Some(b"m2".to_vec()),
        },
    );
    state.insert(
        NON_UTF8_ID.to_vec(),
        Expected {
            first: 0,
            entries: vec![vec![0, 1, 2, 0xff]],
            metadata: Some(vec![0xfe; 3]),
        },
    );
    state.insert(
        b"meta-only".to_vec(),
        Expected {
            metadata: Some(b"just metadata".to_vec()),
            ..Expected::default()
        },
    );
    state.insert(
        b"gamma".to_vec(),
        Expected {
            entries: vec![Vec::new()],
            ..Expected::default()
        },
    );
    state.insert(
        b"delta".to_vec(),
        Expected {
            entries: (0..3).map(|i| entry("delta", i)).collect(),
            ..Expected::default()
        },
    );
    state
}

/// Reads the state of a store through the engine.
fn read_state(dir: &Path) -> State {
    let store = Store::open(dir, options()).expect("open for reading");
    let snap = store.snapshot();
    let mut out = State::new();
    for id in snap.journal_ids() {
        let j = snap.journal(id).expect("listed");
        out.insert(
            id.to_vec(),
            Expected {
                first: j.first_index(),
                entries: j
                    .entries(..)
                    .map(|e| e.expect("entry").1.to_vec())
                    .collect(),
                metadata: j.metadata().expect("metadata").map(<[u8]>::to_vec),
            },
        );
    }
    drop(snap);
    store.close().expect("close");
    out
}

/// Every file of a directory (name -> bytes).
fn files(dir: &Path) -> BTreeMap<String, Vec<u8>> {
    std::fs::read_dir(dir)
        .expect("list")
        .map(|e| {
            let e = e.expect("entry");
            let name = e.file_name().to_string_lossy().into_owned();
            let bytes = if e.file_type().expect("type").is_file() {
                std::fs::read(e.path()).expect("read")
            } else {
                b"<dir>".to_vec()
            };
            (name, bytes)
        })
        .collect()
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).expect("mkdir");
    for (name, bytes) in files(from) {
        std::fs::write(to.join(name), bytes).expect("copy");
    }
}

/// The result of one run of the tool.
struct Run {
    code: i32,
    stdout: String,
    stderr: String,
}

impl Run {
    fn json(&self) -> Value {
        serde_json::from_str(&self.stdout)
            .unwrap_or_else(|e| panic!("not JSON ({e}):\n{}", self.stdout))
    }
}

/// Runs `journal-dump ARGS`, checking that it did not panic and exited 0,
/// 1 or 2 (a panic exits 101).
fn dump(args: &[&dyn AsRef<std::ffi::OsStr>]) -> Run {
    let out = Command::cargo_bin("journal-dump")
        .expect("binary")
        .args(args.iter().map(|a| a.as_ref()))
        .output()
        .expect("run journal-dump");
    let run = Run {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    };
    let shown: Vec<String> = args
        .iter()
        .map(|a| a.as_ref().to_string_lossy().into_owned())
        .collect();
    assert!(
        !run.stderr.contains("panicked") && matches!(run.code, 0..=3),
        "journal-dump {shown:?} exited {} (stderr: {})",
        run.code,
        run.stderr
    );
    run
}

/// Every read-only command on `dir`, text and JSON; returns the runs by
/// command name. Each JSON output parses and agrees with the exit status.
fn every_read_command(dir: &Path) -> BTreeMap<&'static str, (Run, Run)> {
    let seg = inspect::segment_files(dir)
        .ok()
        .and_then(|f| f.first().map(|(_, p)| p.clone()))
        .unwrap_or_else(|| dir.join("seg-00000001.jseg"));
    let cmds: Vec<(&'static str, Vec<&dyn AsRef<std::ffi::OsStr>>)> = vec![
        ("summary", vec![&"summary", &dir]),
        ("segments", vec![&"segments", &dir]),
        ("segment", vec![&"segment", &seg]),
        ("manifest", vec![&"manifest", &dir]),
        ("journal", vec![&"journal", &dir, &"alpha"]),
        ("verify", vec![&"verify", &dir]),
    ];
    let mut out = BTreeMap::new();
    for (name, args) in cmds {
        let text = dump(&args);
        let mut json_args = args.clone();
        json_args.push(&"--json");
        let json = dump(&json_args);
        let v = json.json();
        assert_eq!(v["ok"], Value::Bool(json.code == 0), "{name}: ok vs exit");
        assert_eq!(text.code, json.code, "{name}: text and JSON exit alike");
        assert!(!text.stdout.is_empty(), "{name}: printed nothing");
        out.insert(name, (text, json));
    }
    out
}

/// On a healthy store every command succeeds, shows what was written, and
/// changes no byte; `salvage` rebuilds the same state elsewhere.
#[test]
fn every_command_on_a_healthy_store() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("store");
    let expected = build_store(&dir);
    let before = files(&dir);
    let runs = every_read_command(&dir);
    for (name, (text, _)) in &runs {
        assert_eq!(
            text.code, 0,
            "{name} failed:\n{}{}",
            text.stdout, text.stderr
        );
    }
    assert_eq!(files(&dir), before, "a read command changed the store");

    // summary
    let s = runs["summary"].1.json();
    assert_eq!(s["format_version"], journalstore::record::FORMAT_VERSION);
    assert_eq!(s["manifest_version"], 1);
    assert_eq!(
        s["segment_versions"],
        serde_json::json!([journalstore::record::FORMAT_VERSION])
    );
    assert_eq!(s["source"], "replay");
    assert_eq!(s["journals"], expected.len() as u64);
    let entries: usize = expected.values().map(|e| e.entries.len()).sum();
    assert_eq!(s["entries"], entries as u64);
    let bytes: usize = expected
        .values()
        .flat_map(|e| e.entries.iter().map(Vec::len))
        .sum();
    assert_eq!(s["entry_bytes"], bytes as u64);
    let segs = s["segments"].as_array().unwrap();
    assert!(segs.len() >= 2, "the store rolled: {segs:?}");
    assert!(
        segs.iter().all(|s| s["live_ratio"].is_null()
            || (0.0..=1.0).contains(&s["live_ratio"].as_f64().unwrap())),
        "live ratios in 0..=1"
    );
    assert_eq!(segs.last().unwrap()["state"], "active");
    let ids: Vec<u64> = segs.iter().map(|s| s["id"].as_u64().unwrap()).collect();
    assert!(!ids.contains(&1), "segment 1 (only tmp) was freed: {ids:?}");
    assert!(
        s["oldest_lsn"].as_u64().unwrap() > 1,
        "freed records are gone"
    );
    assert!(s["newest_lsn"].as_u64().unwrap() >= s["oldest_lsn"].as_u64().unwrap());
    assert!(runs["summary"].0.stdout.contains("journals     5"));

    // segments: every record intact, every op kind present, LSNs increase.
    let v = runs["segments"].1.json();
    let mut kinds = std::collections::BTreeSet::new();
    let mut last_lsn = 0;
    for seg in v["segments"].as_array().unwrap() {
        assert!(seg["header"].is_object());
        for item in seg["items"].as_array().unwrap() {
            if item["type"] == "record" {
                assert_eq!(item["checksums"], "ok");
                let lsn = item["lsn"].as_u64().unwrap();
                assert!(lsn > last_lsn, "LSNs increase in manifest order");
                last_lsn = lsn;
                for op in item["ops"].as_array().unwrap() {
                    kinds.insert(op["kind"].as_str().unwrap().to_owned());
                }
            }
        }
        assert_eq!(
            seg["items"].as_array().unwrap().last().unwrap()["type"],
            "end"
        );
    }
    for kind in [
        "append",
        "set_metadata",
        "trim_prefix",
        "truncate",
        "delete_journal",
    ] {
        assert!(kinds.contains(kind), "no {kind} in {kinds:?}");
    }
    // Text: the non-UTF-8 id prints as hex.
    assert!(runs["segments"].0.stdout.contains("0xff006a"));

    // --from and --limit.
    let first_seg = v["segments"][0]["file"].as_str().unwrap().to_owned();
    let limited = dump(&[&"segment", &first_seg, &"--limit", &"2", &"--json"]).json();
    let items = limited["segments"][0]["items"].as_array().unwrap();
    assert_eq!(items.len(), 3, "2 records and the end: {items:?}");
    assert_eq!(limited["segments"][0]["truncated"], true);
    let second = items[1]["offset"].as_u64().unwrap();
    let from = dump(&[
        &"segment",
        &first_seg,
        &"--from",
        &(second - 8).to_string(),
        &"--json",
    ]);
    assert_eq!(from.code, 0, "{}", from.stdout);
    let from = from.json();
    let first_item = &from["segments"][0]["items"][0];
    assert_eq!(
        first_item["offset"], second,
        "--from resyncs to the next record"
    );

    // manifest
    let m = runs["manifest"].1.json();
    assert_eq!(m["manifests"][0]["role"], "current");
    assert_eq!(
        m["manifests"][0]["manifest"]["segments"]
            .as_array()
            .unwrap()
            .len(),
        segs.len()
    );
    let file = dump(&[&"manifest", &dir.join("MANIFEST"), &"--json"]).json();
    assert_eq!(
        file["manifests"][0]["manifest"],
        m["manifests"][0]["manifest"]
    );

    // journal: bounds, metadata and entries as written.
    let j = runs["journal"].1.json();
    let alpha = &expected[&b"alpha"[..]];
    assert_eq!(j["first_index"], alpha.first);
    assert_eq!(j["len"], alpha.entries.len() as u64);
    assert_eq!(j["metadata"]["value"], "m2");
    let got: Vec<String> = j["entries"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["value"]["value"].as_str().unwrap().to_owned())
        .collect();
    let want: Vec<String> = alpha
        .entries
        .iter()
        .map(|e| String::from_utf8(e.clone()).unwrap())
        .collect();
    assert_eq!(got, want);
    let ranged = dump(&[&"journal", &dir, &"alpha", &"--range", &"10..12", &"--json"]).json();
    let idx: Vec<u64> = ranged["entries"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["index"].as_u64().unwrap())
        .collect();
    assert_eq!(idx, vec![10, 11]);
    let hexed = dump(&[
        &"journal", &dir, &"alpha", &"--range", &"5", &"--hex", &"--json",
    ])
    .json();
    assert_eq!(hexed["entries"][0]["value"]["encoding"], "hex");
    assert_eq!(
        hexed["entries"][0]["value"]["value"],
        entry("alpha", 5)
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect::<String>()
    );
    let raw = dump(&[&"journal", &dir, &"--hex-id", &"ff006a", &"--json"]);
    assert_eq!(raw.code, 0, "{}", raw.stdout);
    let raw = raw.json();
    assert_eq!(raw["journal"]["hex"], "ff006a");
    assert_eq!(raw["journal"]["utf8"], Value::Null);
    assert_eq!(raw["entries"][0]["value"]["encoding"], "hex");
    assert_eq!(raw["entries"][0]["value"]["value"], "000102ff");
    let lossy = dump(&[
        &"journal",
        &dir,
        &"--hex-id",
        &"ff006a",
        &"--utf8",
        &"--json",
    ])
    .json();
    assert_eq!(lossy["metadata"]["encoding"], "utf8");
    assert_eq!(lossy["metadata"]["value"], "\u{fffd}\u{fffd}\u{fffd}");
    let text = dump(&[&"journal", &dir, &"--hex-id", &"ff006a"]);
    assert!(
        text.stdout.contains("journal   0xff006a"),
        "{}",
        text.stdout
    );
    let missing = dump(&[&"journal", &dir, &"nope"]);
    assert_eq!(missing.code, 3, "an absent journal is not found");

    // verify
    let v = runs["verify"].1.json();
    assert_eq!(v["problems"], Value::Array(vec![]));
    assert_eq!(v["journals"], expected.len() as u64);
    assert!(runs["verify"].0.stdout.contains("OK: every checksum"));

    // salvage: the same state in a new store; the source untouched.
    let out = tmp.path().join("salvaged");
    let run = dump(&[&"salvage", &dir, &out, &"--json"]);
    assert_eq!(run.code, 0, "{}", run.stdout);
    assert_eq!(run.json()["journals"], expected.len() as u64);
    assert_eq!(files(&dir), before, "salvage changed its source");
    assert_eq!(read_state(&out), expected);
    assert_eq!(read_state(&dir), expected);
    // A second salvage into the same directory is refused, as is one into
    // the store itself.
    assert_eq!(dump(&[&"salvage", &dir, &out]).code, 1);
    let inside = dump(&[&"salvage", &dir, &dir.join("sub")]);
    assert_eq!(inside.code, 1);
    assert!(!dir.join("sub").exists(), "salvage wrote inside its source");
}

/// The JSON shapes are the documented ones: these keys, at least, in every
/// command's object (the README lists them; renaming one breaks users).
#[test]
fn json_shapes_are_stable() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("store");
    build_store(&dir);
    let keys = |v: &Value| -> Vec<String> {
        let mut k: Vec<String> = v.as_object().unwrap().keys().cloned().collect();
        k.sort();
        k
    };
    let runs = every_read_command(&dir);
    let expect = |name: &str, want: &[&str]| {
        let mut want: Vec<String> = want.iter().map(|s| s.to_string()).collect();
        want.sort();
        assert_eq!(keys(&runs[name].1.json()), want, "{name}");
    };
    expect(
        "summary",
        &[
            "command",
            "ok",
            "problems",
            "dir",
            "source",
            "format_version",
            "manifest_version",
            "segment_versions",
            "generation",
            "next_segment_id",
            "lsn_floor",
            "segments",
            "journals",
            "entries",
            "entry_bytes",
            "metadata_bytes",
            "oldest_lsn",
            "newest_lsn",
            "torn_tail",
            "status",
        ],
    );
    expect("segments", &["command", "ok", "problems", "segments"]);
    expect("segment", &["command", "ok", "problems", "segments"]);
    expect("manifest", &["command", "ok", "problems", "manifests"]);
    expect(
        "journal",
        &[
            "command",
            "ok",
            "problems",
            "dir",
            "journal",
            "source",
            "found",
            "first_index",
            "end_index",
            "len",
            "metadata",
            "metadata_error",
            "range_start",
            "range_end",
            "entries",
        ],
    );
    expect(
        "verify",
        &[
            "command",
            "ok",
            "problems",
            "dir",
            "generation",
            "segments",
            "records",
            "ops",
            "journals",
            "values",
            "notes",
            "attempts",
        ],
    );
    let s = runs["summary"].1.json();
    assert_eq!(
        keys(&s["status"]),
        [
            "age_ms",
            "bytes_on_disk",
            "bytes_written",
            "error",
            "file",
            "generation",
            "interval_ms",
            "journals",
            "live_bytes",
            "lsn",
            "oldest_pinned_age_ms",
            "oldest_pinned_generation",
            "pid",
            "pinned_only_bytes",
            "pinned_snapshots",
            "segments",
            "stale",
            "state",
            "writes_stopped",
            "written_unix_ms"
        ]
    );
    let mut seg_keys = keys(&s["segments"][0]);
    seg_keys.sort();
    assert_eq!(
        seg_keys,
        [
            "file",
            "id",
            "live_bytes",
            "live_items",
            "live_ratio",
            "size",
            "state",
            "version",
            "written"
        ]
    );
    let segs = runs["segments"].1.json();
    assert_eq!(
        keys(&segs["segments"][0]),
        [
            "file",
            "header",
            "header_error",
            "id",
            "items",
            "scan_from",
            "scan_limit",
            "sealed_len",
            "size",
            "state",
            "tail_nonzero_at",
            "truncated"
        ]
    );
    let record = &segs["segments"][0]["items"][0];
    assert_eq!(
        keys(record),
        [
            "checksums",
            "header_crc",
            "kind",
            "lsn",
            "offset",
            "op_count",
            "op_error",
            "ops",
            "payload_crc",
            "payload_len",
            "synced_through",
            "type"
        ]
    );
    assert_eq!(
        keys(&record["ops"][0]),
        [
            "end",
            "first",
            "index",
            "journal",
            "kind",
            "offset",
            "value_crc",
            "value_crc_ok",
            "value_len"
        ]
    );
    assert_eq!(keys(&record["ops"][0]["journal"]), ["hex", "utf8"]);
    let j = runs["journal"].1.json();
    assert_eq!(keys(&j["entries"][0]), ["error", "index", "value"]);
    assert_eq!(keys(&j["metadata"]), ["encoding", "len", "value"]);
    let out = tmp.path().join("out");
    let sal = dump(&[&"salvage", &dir, &out, &"--json"]).json();
    assert_eq!(
        keys(&sal),
        [
            "all_suspect",
            "command",
            "dir",
            "entries",
            "journals",
            "lost",
            "lost_ranges",
            "manifest_error",
            "missing",
            "ok",
            "out",
            "problems",
            "records",
            "suspect",
            "suspect_policy",
            "torn",
            "unlisted",
            "written"
        ]
    );
}

/// Journals at any index and metadata absent vs empty (format version 2):
/// a journal created at 1 by `trim_prefix`, a trim past the end, a truncate
/// below first, a trim creating a journal that stays empty, metadata set to
/// empty next to metadata removed by `clear_metadata`. Every command reads
/// them as the engine does, and `salvage` rebuilds them exactly.
#[test]
fn journals_at_any_index_and_absent_metadata() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("store");
    let store = Store::open(&dir, options()).expect("open");
    let write = |f: &dyn Fn(&mut WriteBatch)| {
        let mut b = WriteBatch::new();
        f(&mut b);
        store.write(&b).expect("write");
    };
    write(&|b| {
        b.trim_prefix(b"raft", 1);
    });
    write(&|b| {
        b.append(b"raft", b"one").append(b"raft", b"two");
    });
    write(&|b| {
        b.append(b"follower", b"old 0")
            .append(b"follower", b"old 1");
    });
    write(&|b| {
        b.trim_prefix(b"follower", 100)
            .append(b"follower", b"hundred");
    });
    write(&|b| {
        b.append(b"back", b"0")
            .append(b"back", b"1")
            .append(b"back", b"2");
    });
    write(&|b| {
        b.trim_prefix(b"back", 2).truncate(b"back", 1);
    });
    write(&|b| {
        b.trim_prefix(b"empty-at-7", 7);
    });
    write(&|b| {
        b.set_metadata(b"meta-empty", b"")
            .set_metadata(b"meta-cleared", b"soon gone")
            .append(b"meta-cleared", b"entry");
    });
    write(&|b| {
        b.clear_metadata(b"meta-cleared");
    });
    store.close().expect("close");

    let mut expected = State::new();
    let mut put = |id: &[u8], first: u64, entries: &[&[u8]], metadata: Option<&[u8]>| {
        expected.insert(
            id.to_vec(),
            Expected {
                first,
                entries: entries.iter().map(|e| e.to_vec()).collect(),
                metadata: metadata.map(<[u8]>::to_vec),
            },
        );
    };
    put(b"raft", 1, &[b"one", b"two"], None);
    put(b"follower", 100, &[b"hundred"], None);
    put(b"back", 1, &[], None);
    put(b"empty-at-7", 7, &[], None);
    put(b"meta-empty", 0, &[], Some(b""));
    put(b"meta-cleared", 0, &[b"entry"], None);
    assert_eq!(read_state(&dir), expected);
    let before = files(&dir);

    // summary and verify.
    let s = dump(&[&"summary", &dir, &"--json"]);
    assert_eq!(s.code, 0, "{}", s.stdout);
    let s = s.json();
    assert_eq!(s["journals"], expected.len() as u64);
    assert_eq!(s["entries"], 4);
    assert_eq!(s["metadata_bytes"], 0);
    let v = dump(&[&"verify", &dir, &"--json"]);
    assert_eq!(v.code, 0, "{}", v.stdout);

    // segments: the clear is an operation of kind clear_metadata with the
    // journal's unchanged bounds and no index; the trims and truncates
    // carry the bounds they leave.
    let segs = dump(&[&"segments", &dir, &"--json"]).json();
    let ops: Vec<Value> = segs["segments"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|seg| seg["items"].as_array().unwrap().clone())
        .filter(|i| i["type"] == "record")
        .flat_map(|i| i["ops"].as_array().unwrap().clone())
        .collect();
    let find = |kind: &str, id: &str| -> Vec<(u64, u64, Value)> {
        ops.iter()
            .filter(|o| o["kind"] == kind && o["journal"]["utf8"] == id)
            .map(|o| {
                (
                    o["first"].as_u64().unwrap(),
                    o["end"].as_u64().unwrap(),
                    o["index"].clone(),
                )
            })
            .collect()
    };
    assert_eq!(
        find("clear_metadata", "meta-cleared"),
        [(0, 1, Value::Null)]
    );
    assert_eq!(find("trim_prefix", "raft"), [(1, 1, Value::from(1))]);
    assert_eq!(
        find("trim_prefix", "follower"),
        [(100, 100, Value::from(100))]
    );
    assert_eq!(find("truncate", "back"), [(1, 1, Value::from(1))]);
    assert_eq!(find("trim_prefix", "empty-at-7"), [(7, 7, Value::from(7))]);
    let text = dump(&[&"segments", &dir]);
    assert!(text.stdout.contains("clear_metadata"), "{}", text.stdout);

    // journal: bounds at any index; metadata absent (null) vs empty.
    let j = |id: &str| dump(&[&"journal", &dir, &id, &"--json"]).json();
    let raft = j("raft");
    assert_eq!(
        (raft["first_index"].clone(), raft["end_index"].clone()),
        (1.into(), 3.into())
    );
    let idx: Vec<u64> = raft["entries"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["index"].as_u64().unwrap())
        .collect();
    assert_eq!(idx, [1, 2]);
    let empty7 = j("empty-at-7");
    assert_eq!(empty7["found"], true);
    assert_eq!(
        (empty7["first_index"].clone(), empty7["len"].clone()),
        (7.into(), 0.into())
    );
    let cleared = j("meta-cleared");
    assert_eq!(cleared["metadata"], Value::Null);
    assert_eq!(cleared["metadata_error"], Value::Null);
    let empty = j("meta-empty");
    assert_eq!(empty["metadata"]["len"], 0);
    assert_eq!(empty["metadata"]["value"], "");
    let text = |id: &str| dump(&[&"journal", &dir, &id]).stdout;
    assert!(
        text("meta-cleared").contains("metadata  absent"),
        "{}",
        text("meta-cleared")
    );
    assert!(
        text("meta-empty").contains("metadata  \"\" (0 bytes)"),
        "{}",
        text("meta-empty")
    );
    assert_eq!(files(&dir), before, "a read command changed the store");

    // salvage keeps the bounds and tells absent from empty metadata.
    let out = tmp.path().join("salvaged");
    let run = dump(&[&"salvage", &dir, &out, &"--json"]);
    assert_eq!(run.code, 0, "{}", run.stdout);
    assert_eq!(read_state(&out), expected);
}

/// `summary` of the frozen version-1 store (`format-spec/vectors/v1/`):
/// segment version 1, manifest layout 1; after the engine opened it (and
/// rolled to a version-2 segment), both segment versions show, per segment
/// and in `segment_versions`, and `format_version` is the newest.
#[test]
fn summary_shows_segment_versions_across_an_upgrade() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("store");
    let frozen = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../format-spec/vectors/v1/all-ops");
    copy_dir(&frozen, &dir);
    let versions = |s: &Value| -> Vec<Value> {
        s["segments"]
            .as_array()
            .unwrap()
            .iter()
            .map(|seg| seg["version"].clone())
            .collect()
    };

    let s = dump(&[&"summary", &dir, &"--json"]);
    assert_eq!(s.code, 0, "{}", s.stdout);
    let s = s.json();
    assert_eq!(s["format_version"], 1);
    assert_eq!(s["manifest_version"], 1);
    assert_eq!(s["segment_versions"], serde_json::json!([1]));
    assert_eq!(versions(&s), [Value::from(1)]);
    let j = dump(&[&"journal", &dir, &"--hex-id", &"fffe", &"--json"]).json();
    assert_eq!(j["metadata"], Value::Null, "never set: absent");

    Store::open(&dir, options())
        .expect("open")
        .close()
        .expect("close");
    let s = dump(&[&"summary", &dir, &"--json"]).json();
    assert_eq!(s["format_version"], 2);
    assert_eq!(s["manifest_version"], 1);
    assert_eq!(s["segment_versions"], serde_json::json!([1, 2]));
    assert_eq!(versions(&s), [Value::from(1), Value::from(2)]);
    let text = dump(&[&"summary", &dir]).stdout;
    assert!(
        text.contains("format       version 2 (segments: 1, 2; manifest layout 1)"),
        "{text}"
    );
}

/// A metadata value that fails its own checksum (record checksums made
/// right) is damage: `verify` reports it, and `salvage`, which cannot
/// recover it, should say so rather than write the journal as one whose
/// metadata was never set. Ignored: `inspect::Salvaged::journal` turns a
/// metadata value that fails its checksum into `None`, and the salvage
/// report's `lost` covers entries only, so the salvage exits 0 and the
/// copy reads as "no metadata".
#[test]
fn salvage_reports_a_damaged_metadata_value() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("store");
    build_store(&dir);
    let m = inspect::read_manifest(&dir.join("MANIFEST")).unwrap();
    let mut found = None;
    for s in &m.segments {
        let path = dir.join(&s.file_name);
        let file = SegmentFile::read(&path).unwrap();
        for item in file.scan(0, s.sealed_len, false) {
            if let ScanItem::Record {
                offset,
                payload_len,
                ops,
                ..
            } = item
            {
                if let Some(op) = ops
                    .iter()
                    .find(|o| o.kind == "set_metadata" && o.journal == b"meta-only")
                {
                    found = Some((
                        path.clone(),
                        offset as usize,
                        payload_len as usize,
                        op.offset,
                    ));
                }
            }
        }
    }
    let (path, r, payload_len, op) = found.expect("the set_metadata of meta-only");
    let mut bytes = std::fs::read(&path).unwrap();
    // The value starts after the op header and the 9-byte id "meta-only".
    bytes[op as usize + 32 + 9] ^= 1;
    let payload_crc = crc32fast::hash(&bytes[r + 32..r + 32 + payload_len]);
    bytes[r + 4..r + 8].copy_from_slice(&payload_crc.to_le_bytes());
    let header_crc = crc32fast::hash(&bytes[r + 4..r + 32]);
    bytes[r..r + 4].copy_from_slice(&header_crc.to_le_bytes());
    std::fs::write(&path, bytes).unwrap();

    assert_eq!(dump(&[&"verify", &dir]).code, 1, "verify sees the damage");
    let out = tmp.path().join("salvaged");
    let run = dump(&[&"salvage", &dir, &out, &"--json"]);
    assert_eq!(
        run.code, 1,
        "salvage lost a metadata value and must say so:\n{}",
        run.stdout
    );
    let v = run.json();
    let suspect = v["suspect"].as_array().unwrap();
    assert!(
        suspect.iter().any(|s| s["journal"]["utf8"] == "meta-only"
            && s["reasons"][0].as_str().unwrap().contains("metadata")),
        "{v}"
    );
}

// ---------------------------------------------------------------------------
// A store held open by another process.

const HOLDER_ENV: &str = "JOURNAL_DUMP_TEST_HOLDER_DIR";

/// Not a test: the child process of `works_on_a_store_open_in_another_process`
/// (this test binary run again with `--ignored --exact holder_process`).
/// Opens the store in `$JOURNAL_DUMP_TEST_HOLDER_DIR`, writes, prints
/// `HOLDER-READY` and then obeys stdin: `spin` writes continuously
/// (printing `HOLDER-SPINNING` once 10 more batches are written) until
/// `stop` (then `HOLDER-READY` again); end of input closes the store.
#[test]
#[ignore = "helper process for works_on_a_store_open_in_another_process"]
fn holder_process() {
    let dir = PathBuf::from(std::env::var_os(HOLDER_ENV).expect("run only as a child"));
    let store = Store::open(&dir, options()).expect("child open");
    let write = |i: u64| {
        let mut b = WriteBatch::new();
        b.append(b"live", &entry("live", i))
            .set_metadata(b"live", format!("n={}", i + 1).as_bytes());
        store.write(&b).expect("child write");
    };
    let mut n = 0;
    for _ in 0..80 {
        write(n);
        n += 1;
    }
    println!("HOLDER-READY");
    let stop = std::sync::atomic::AtomicBool::new(false);
    // One reader of stdin for the whole run (a second `lines()` would wait
    // for the first one's lock forever).
    let mut lines = std::io::stdin().lines();
    while let Some(line) = lines.next() {
        match line.expect("stdin").trim() {
            "spin" => {
                n = std::thread::scope(|s| {
                    let writer = s.spawn(|| {
                        let mut n = n;
                        while !stop.load(std::sync::atomic::Ordering::SeqCst) {
                            write(n);
                            n += 1;
                            if n % 1000 == 90 {
                                println!("HOLDER-SPINNING");
                            }
                        }
                        n
                    });
                    for l in lines.by_ref() {
                        if l.expect("stdin").trim() == "stop" {
                            break;
                        }
                    }
                    stop.store(true, std::sync::atomic::Ordering::SeqCst);
                    writer.join().expect("writer")
                });
                stop.store(false, std::sync::atomic::Ordering::SeqCst);
                println!("HOLDER-READY");
            }
            other => panic!("unknown holder command {other:?}"),
        }
    }
    store.close().expect("child close");
}

struct Holder {
    child: Child,
    stdin: Option<ChildStdin>,
    stdout: BufReader<ChildStdout>,
}

impl Holder {
    fn start(dir: &Path) -> Holder {
        let mut child = std::process::Command::new(std::env::current_exe().unwrap())
            .args([
                "holder_process",
                "--exact",
                "--ignored",
                "--nocapture",
                "--test-threads=1",
            ])
            .env(HOLDER_ENV, dir)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .expect("spawn holder");
        let stdin = child.stdin.take();
        let stdout = BufReader::new(child.stdout.take().unwrap());
        let mut h = Holder {
            child,
            stdin,
            stdout,
        };
        h.wait_ready();
        h
    }

    fn wait_ready(&mut self) {
        self.wait_for("HOLDER-READY");
    }

    fn wait_for(&mut self, token: &str) {
        let mut line = String::new();
        loop {
            line.clear();
            let n = self.stdout.read_line(&mut line).expect("holder output");
            assert!(n > 0, "holder exited before printing {token}");
            if line.contains(token) {
                return;
            }
        }
    }

    fn send(&mut self, cmd: &str) {
        let stdin = self.stdin.as_mut().unwrap();
        writeln!(stdin, "{cmd}").expect("holder stdin");
        stdin.flush().unwrap();
    }

    fn finish(mut self) {
        drop(self.stdin.take());
        let status = self.child.wait().expect("holder exit");
        assert!(status.success(), "holder failed: {status}");
    }
}

impl Drop for Holder {
    fn drop(&mut self) {
        if self.stdin.is_some() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// Another process holds the store open (and its lock): every command
/// works and changes no byte while it is idle, and `summary` and `journal`
/// keep working while it writes.
#[test]
fn works_on_a_store_open_in_another_process() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("store");
    build_store(&dir);
    let mut holder = Holder::start(&dir);
    assert!(
        matches!(Store::open(&dir, options()), Err(Error::Locked { .. })),
        "the child holds the lock"
    );
    let before = files(&dir);
    let runs = every_read_command(&dir);
    for (name, (text, _)) in &runs {
        assert_eq!(text.code, 0, "{name}:\n{}{}", text.stdout, text.stderr);
    }
    let live = dump(&[&"journal", &dir, &"live", &"--json"]).json();
    assert_eq!(live["len"], 80, "the child's writes are visible");
    assert_eq!(live["metadata"]["value"], "n=80");
    assert_eq!(files(&dir), before, "journal-dump changed the store");

    holder.send("spin");
    // The child has written 10 more batches and goes on writing.
    holder.wait_for("HOLDER-SPINNING");
    for _ in 0..5 {
        // A batch being written as the summary reads is a torn tail, the
        // one problem allowed here.
        let s = dump(&[&"summary", &dir, &"--json"]);
        let problems = s.json()["problems"].as_array().unwrap().clone();
        assert!(
            problems.iter().all(|p| p["repaired_at_open"] == true
                && p["reason"].as_str().unwrap().contains("torn tail")),
            "summary during writes: {}",
            s.stdout
        );
        let j = dump(&[&"journal", &dir, &"live", &"--json"]);
        assert_eq!(j.code, 0, "journal during writes: {}", j.stdout);
        // Metadata and entries come from one point in time.
        let j = j.json();
        assert_eq!(
            j["metadata"]["value"].as_str().unwrap(),
            format!("n={}", j["len"])
        );
    }
    holder.send("stop");
    holder.wait_ready();
    let live = dump(&[&"journal", &dir, &"live", &"--json"]).json();
    assert!(
        live["len"].as_u64().unwrap() >= 90,
        "the child wrote meanwhile"
    );
    let before = files(&dir);
    let v = dump(&[&"verify", &dir]);
    assert_eq!(v.code, 0, "{}", v.stdout);
    assert_eq!(files(&dir), before, "verify changed the store");
    holder.finish();
}

// ---------------------------------------------------------------------------
// Damaged copies.

/// The first record of the first sealed segment holding an `append`:
/// (file, record offset, op offset).
fn a_sealed_record(dir: &Path) -> (PathBuf, u64, u64) {
    let m = inspect::read_manifest(&dir.join("MANIFEST")).unwrap();
    for s in m.segments.iter().filter(|s| s.sealed_len.is_some()) {
        let path = dir.join(&s.file_name);
        let file = SegmentFile::read(&path).unwrap();
        for item in file.scan(0, s.sealed_len, false) {
            if let ScanItem::Record { offset, ops, .. } = item {
                if let Some(op) = ops
                    .iter()
                    .find(|o| o.kind == "append" && o.journal == b"alpha")
                {
                    return (path, offset, op.offset);
                }
            }
        }
    }
    panic!("no sealed record with an append");
}

fn flip(path: &Path, offset: u64) {
    let mut bytes = std::fs::read(path).unwrap();
    bytes[offset as usize] ^= 0x10;
    std::fs::write(path, bytes).unwrap();
}

fn active_segment(dir: &Path) -> PathBuf {
    let m = inspect::read_manifest(&dir.join("MANIFEST")).unwrap();
    dir.join(&m.segments.last().unwrap().file_name)
}

/// Seeded: the garbage is the same on every run.
struct Rng(fastrand::Rng);
impl Rng {
    fn new(seed: u64) -> Rng {
        Rng(fastrand::Rng::with_seed(seed))
    }
    fn bytes(&mut self, n: usize) -> Vec<u8> {
        (0..n).map(|_| self.0.u8(..)).collect()
    }
}

/// What `verify --json` reports, as (file name, offset, reason, repaired).
/// A problem as (file name, offset, reason, repaired at open).
type Found = (String, u64, String, bool);

fn verify_problems(dir: &Path) -> (i32, Vec<Found>, String) {
    let run = dump(&[&"verify", &dir, &"--json"]);
    let text = dump(&[&"verify", &dir]);
    assert_eq!(run.code, text.code);
    let v = run.json();
    let problems = v["problems"]
        .as_array()
        .unwrap()
        .iter()
        .chain(v["notes"].as_array().unwrap())
        .map(|p| {
            (
                Path::new(p["file"].as_str().unwrap())
                    .file_name()
                    .unwrap()
                    .to_string_lossy()
                    .into_owned(),
                p["offset"].as_u64().unwrap(),
                p["reason"].as_str().unwrap().to_owned(),
                p["repaired_at_open"].as_bool().unwrap(),
            )
        })
        .collect();
    (run.code, problems, text.stdout)
}

/// Damage is found and placed, the store is left as it was, and every
/// command still prints what it can.
fn check_damaged(
    name: &str,
    dir: &Path,
    want_file: &str,
    want_offset: Option<u64>,
    want_reason: &str,
) {
    check_found(name, dir, want_file, want_offset, want_reason, false)
}

/// As [`check_damaged`], for what is a note and not damage (a torn tail,
/// a leftover file): verify exits 0 and lists it among its notes.
fn check_noted(
    name: &str,
    dir: &Path,
    want_file: &str,
    want_offset: Option<u64>,
    want_reason: &str,
) {
    check_found(name, dir, want_file, want_offset, want_reason, true)
}

fn check_found(
    name: &str,
    dir: &Path,
    want_file: &str,
    want_offset: Option<u64>,
    want_reason: &str,
    note: bool,
) {
    let before = files(dir);
    let (code, problems, text) = verify_problems(dir);
    if note {
        assert_eq!(code, 0, "{name}: a note, not damage:\n{text}");
    } else {
        assert_eq!(code, 1, "{name}: verify must fail:\n{text}");
    }
    assert!(
        problems.iter().any(|(f, o, r, repaired)| f == want_file
            && want_offset.is_none_or(|w| *o == w)
            && r.contains(want_reason)
            && *repaired == note),
        "{name}: expected {want_file} @ {want_offset:?}: {want_reason:?} in {problems:#?}"
    );
    let line = match want_offset {
        Some(o) => format!("{want_file} @ {o}"),
        None => want_file.to_owned(),
    };
    assert!(text.contains(&line), "{name}: text names {line}:\n{text}");
    let runs = every_read_command(dir);
    assert!(runs["summary"].0.stdout.contains("segments"), "{name}");
    let out = dir.with_extension("salvaged");
    let sal = dump(&[&"salvage", &dir, &out, &"--json"]);
    if sal.json()["written"] == true {
        // Whatever was salvaged opens as a store.
        read_state(&out);
    }
    assert_eq!(files(dir), before, "{name}: a command changed the store");
}

/// A flipped bit in a sealed segment's record: verify names the file and
/// the record's offset; salvage keeps the rest.
#[test]
fn bit_flip_in_a_sealed_segment() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("store");
    let expected = build_store(&dir);
    let (path, record, op) = a_sealed_record(&dir);
    flip(&path, op + 40);
    let name = path.file_name().unwrap().to_string_lossy().into_owned();
    check_damaged(
        "bit flip",
        &dir,
        &name,
        Some(record),
        "payload checksum mismatch",
    );
    // summary falls back to the scan and says so; segments shows the place.
    let s = dump(&[&"summary", &dir, &"--json"]);
    assert_eq!(s.code, 1);
    assert_eq!(s.json()["source"], "salvage_scan");
    let segs = dump(&[&"segments", &dir]);
    assert!(
        segs.stdout.contains(&format!("@{record:<8} DAMAGED")),
        "{}",
        segs.stdout
    );
    let j = dump(&[&"journal", &dir, &"delta", &"--json"]).json();
    assert_eq!(j["source"], "salvage_scan");
    assert_eq!(j["len"], 3, "an undamaged journal is still shown");
    // The damaged record was the first batch, the only one of the
    // non-UTF-8 journal: salvage keeps every other journal.
    let out = dir.with_extension("salvaged");
    let got = read_state(&out);
    let mut want: Vec<&Vec<u8>> = expected.keys().filter(|k| k[..] != *NON_UTF8_ID).collect();
    want.sort();
    assert_eq!(got.keys().collect::<Vec<_>>(), want);
    assert_eq!(got[&b"delta"[..]], expected[&b"delta"[..]]);
    assert_eq!(got[&b"alpha"[..]], expected[&b"alpha"[..]]);
}

/// A torn tail (the last record of the active segment half written): open
/// would cut it, verify still reports it, marked as repaired at open.
#[test]
fn torn_tail() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("store");
    build_store(&dir);
    let active = active_segment(&dir);
    let file = SegmentFile::read(&active).unwrap();
    let last = file
        .scan(0, None, false)
        .iter()
        .rev()
        .find_map(|i| match i {
            ScanItem::Record { offset, .. } => Some(*offset),
            _ => None,
        })
        .unwrap();
    // Zero the second half of the last record's payload: as if the write
    // stopped midway.
    // The sync mark of the clean close goes too: a crash during the write
    // leaves none.
    remove_sync_mark(&active);
    let mut bytes = std::fs::read(&active).unwrap();
    let len = u32::from_le_bytes(bytes[last as usize + 16..][..4].try_into().unwrap()) as usize;
    let start = last as usize + 32 + len / 2;
    bytes[start..last as usize + 32 + len].fill(0);
    std::fs::write(&active, bytes).unwrap();
    let name = active.file_name().unwrap().to_string_lossy().into_owned();
    check_noted("torn tail", &dir, &name, Some(last), "torn tail");
    let (_, problems, _) = verify_problems(&dir);
    assert!(
        problems.iter().all(|p| p.3),
        "only repairable problems: {problems:?}"
    );
    let s = dump(&[&"summary", &dir, &"--json"]);
    assert_eq!(s.code, 1, "summary reports the torn tail");
    assert_eq!(s.json()["torn_tail"], true);
    assert_eq!(s.json()["source"], "replay");
    // The engine agrees: the store opens without the last batch.
    let state = read_state(&dir);
    assert_eq!(state[&b"delta"[..]].entries.len(), 2);
    let (code, problems, _) = verify_problems(&dir);
    assert_eq!((code, problems), (0, vec![]), "open sealed the tail off");
}

/// A segment the manifest lists is gone.
#[test]
fn missing_segment() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("store");
    build_store(&dir);
    let (path, _, _) = a_sealed_record(&dir);
    std::fs::remove_file(&path).unwrap();
    let name = path.file_name().unwrap().to_string_lossy().into_owned();
    check_damaged("missing segment", &dir, &name, None, "missing");
    let m = dump(&[&"manifest", &dir]);
    assert_eq!(m.code, 0, "the manifest itself is fine");
    let segs = dump(&[&"segments", &dir]);
    assert_eq!(segs.code, 1);
    assert!(segs.stdout.contains("missing"), "{}", segs.stdout);
}

/// A segment and the manifest entry naming it are both gone (a manifest
/// rewritten without it): only the index continuity check can tell.
#[test]
fn lost_segment_no_longer_listed() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("store");
    build_store(&dir);
    let (path, _, _) = a_sealed_record(&dir);
    let id =
        inspect::segment_id_from_file_name(&path.file_name().unwrap().to_string_lossy()).unwrap();
    std::fs::remove_file(&path).unwrap();
    // Rewrite the manifest without the entry (layout: format-spec section 6).
    let bytes = std::fs::read(dir.join("MANIFEST")).unwrap();
    let count = u32::from_le_bytes(bytes[12..16].try_into().unwrap()) as usize;
    let mut out = bytes[..40].to_vec();
    out[12..16].copy_from_slice(&(count as u32 - 1).to_le_bytes());
    for i in 0..count {
        let e = &bytes[40 + 16 * i..56 + 16 * i];
        if u64::from_le_bytes(e[..8].try_into().unwrap()) != u64::from(id) {
            out.extend_from_slice(e);
        }
    }
    let crc = crc32fast::hash(&out);
    out.extend_from_slice(&crc.to_le_bytes());
    std::fs::write(dir.join("MANIFEST"), out).unwrap();
    let (code, problems, text) = verify_problems(&dir);
    assert_eq!(code, 1, "{text}");
    assert!(
        problems
            .iter()
            .any(|p| p.2.contains("referenced but no segment holds it")),
        "{problems:#?}"
    );
    // The replay reports it against the last segment, where it ends.
    let active = active_segment(&dir);
    let name = active.file_name().unwrap().to_string_lossy().into_owned();
    check_damaged(
        "lost segment",
        &dir,
        &name,
        Some(0),
        "referenced but no segment",
    );
}

/// A segment file the manifest does not name (here a copy under a new id,
/// as a crash mid-compaction or a snapshot pinning a replaced segment
/// leaves) shows in `summary` as "unlisted", with a line saying what such
/// a file can be; a store without one gets no such line.
#[test]
fn unlisted_segment_is_explained_in_summary() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("store");
    build_store(&dir);
    let explanation = "(unlisted: a file the manifest does not name";
    let before = dump(&[&"summary", &dir]);
    assert!(!before.stdout.contains(explanation), "{}", before.stdout);
    let (path, _, _) = a_sealed_record(&dir);
    let copy = dir.join(inspect::segment_file_name_of(9999));
    std::fs::copy(&path, &copy).unwrap();
    let after = dump(&[&"summary", &dir]);
    let row = after
        .stdout
        .lines()
        .find(|l| l.contains(&inspect::segment_file_name_of(9999)))
        .unwrap_or_else(|| panic!("no row for the copy:\n{}", after.stdout));
    assert!(row.contains("unlisted"), "{row}");
    assert!(after.stdout.contains(explanation), "{}", after.stdout);
}

/// A value whose own CRC fails inside a record whose checksums were
/// recomputed (so only the value check can see it).
#[test]
fn value_checksum_only() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("store");
    build_store(&dir);
    let (path, record, op) = a_sealed_record(&dir);
    let mut bytes = std::fs::read(&path).unwrap();
    let r = record as usize;
    let payload_len = u32::from_le_bytes(bytes[r + 16..r + 20].try_into().unwrap()) as usize;
    // The value starts after the op header and the 5-byte id "alpha".
    bytes[op as usize + 32 + 5 + 3] ^= 1;
    let payload_crc = crc32fast::hash(&bytes[r + 32..r + 32 + payload_len]);
    bytes[r + 4..r + 8].copy_from_slice(&payload_crc.to_le_bytes());
    let header_crc = crc32fast::hash(&bytes[r + 4..r + 32]);
    bytes[r..r + 4].copy_from_slice(&header_crc.to_le_bytes());
    std::fs::write(&path, bytes).unwrap();
    let name = path.file_name().unwrap().to_string_lossy().into_owned();
    check_damaged(
        "value checksum",
        &dir,
        &name,
        Some(op),
        "value checksum mismatch",
    );
    let segs = dump(&[&"segment", &path]);
    assert_eq!(segs.code, 1);
    assert!(segs.stdout.contains("crc BAD"), "{}", segs.stdout);
}

/// Junk files: a listed segment overwritten with random bytes, a random
/// file named like a segment, a random `MANIFEST`, a random `MANIFEST.tmp`.
#[test]
fn junk_files() {
    let tmp = tempfile::tempdir().unwrap();
    let clean = tmp.path().join("clean");
    build_store(&clean);
    let mut rng = Rng::new(0x5eed);

    let dir = tmp.path().join("junk-segment");
    copy_dir(&clean, &dir);
    let (path, _, _) = a_sealed_record(&dir);
    std::fs::write(&path, rng.bytes(8192)).unwrap();
    let name = path.file_name().unwrap().to_string_lossy().into_owned();
    check_damaged("junk segment", &dir, &name, Some(0), "bad magic");

    let dir = tmp.path().join("junk-orphan");
    copy_dir(&clean, &dir);
    std::fs::write(dir.join("seg-000000ff.jseg"), rng.bytes(5000)).unwrap();
    check_noted(
        "junk orphan",
        &dir,
        "seg-000000ff.jseg",
        Some(0),
        "not listed in manifest generation",
    );

    let dir = tmp.path().join("junk-manifest");
    copy_dir(&clean, &dir);
    std::fs::write(dir.join("MANIFEST"), rng.bytes(76)).unwrap();
    check_damaged("junk manifest", &dir, "MANIFEST", Some(0), "bad magic");
    let m = dump(&[&"manifest", &dir]);
    assert_eq!(m.code, 1);
    assert!(m.stdout.contains("unreadable"), "{}", m.stdout);
    // Without a manifest, segments still prints every file.
    let segs = dump(&[&"segments", &dir, &"--json"]).json();
    assert!(segs["segments"].as_array().unwrap().len() >= 2);

    let dir = tmp.path().join("junk-tmp");
    copy_dir(&clean, &dir);
    std::fs::write(dir.join("MANIFEST.tmp"), rng.bytes(30)).unwrap();
    check_noted("junk tmp", &dir, "MANIFEST.tmp", Some(0), "interrupted");
    let m = dump(&[&"manifest", &dir, &"--json"]).json();
    assert_eq!(m["manifests"][1]["role"], "pending");
}

/// Random garbage and truncated files never make the tool panic; given a
/// file or directory that is not a store, it exits 1 with a message.
#[test]
fn garbage_never_panics() {
    let tmp = tempfile::tempdir().unwrap();
    let clean = tmp.path().join("clean");
    build_store(&clean);
    let mut rng = Rng::new(0xdead_beef);
    let seg = active_segment(&clean);
    let seg_bytes = std::fs::read(&seg).unwrap();
    let manifest = std::fs::read(clean.join("MANIFEST")).unwrap();
    let mut inputs: Vec<(Vec<u8>, Vec<u8>)> = Vec::new();
    for len in [0, 1, 63, 64, 100, 4096] {
        inputs.push((rng.bytes(len), rng.bytes(len.min(200))));
    }
    for cut in [0, 10, 64, 65, 200, 1000, seg_bytes.len() - 1] {
        inputs.push((
            seg_bytes[..cut].to_vec(),
            manifest[..cut.min(manifest.len())].to_vec(),
        ));
    }
    // A valid header followed by garbage.
    let mut g = seg_bytes[..64].to_vec();
    g.extend(rng.bytes(8192 - 64));
    inputs.push((g, manifest.clone()));
    for (i, (seg_in, man_in)) in inputs.into_iter().enumerate() {
        let dir = tmp.path().join(format!("g{i}"));
        std::fs::create_dir(&dir).unwrap();
        let seg_path = dir.join(seg.file_name().unwrap());
        std::fs::write(&seg_path, &seg_in).unwrap();
        std::fs::write(dir.join("MANIFEST"), &man_in).unwrap();
        for args in [
            vec![&"segment" as &dyn AsRef<std::ffi::OsStr>, &seg_path],
            vec![&"segment", &seg_path, &"--from", &"18446744073709551615"],
            vec![&"manifest", &dir.join("MANIFEST")],
            vec![&"summary", &dir],
            vec![&"segments", &dir, &"--from", &"100", &"--limit", &"0"],
            vec![
                &"journal",
                &dir,
                &"alpha",
                &"--range",
                &"18446744073709551614..",
            ],
            vec![&"verify", &dir],
        ] {
            let run = dump(&args);
            let mut json_args = args.clone();
            json_args.push(&"--json");
            dump(&json_args).json();
            assert!(!run.stdout.is_empty(), "printed nothing for {i}");
        }
        let out = tmp.path().join(format!("g{i}-out"));
        dump(&[&"salvage", &dir, &out]);
    }
    // A file without end is refused, not read forever.
    let zero = Path::new("/dev/zero");
    if zero.exists() {
        assert_eq!(dump(&[&"segment", &zero]).code, 1);
        assert_eq!(dump(&[&"manifest", &zero]).code, 1);
    }
    // Paths that do not exist: "not found" (3), said on stderr before
    // anything is printed on stdout.
    let nowhere = tmp.path().join("nowhere");
    for cmd in [
        "summary", "segments", "verify", "manifest", "journals", "segment",
    ] {
        for json in [false, true] {
            let mut args: Vec<&dyn AsRef<std::ffi::OsStr>> = vec![&cmd, &nowhere];
            if json {
                args.push(&"--json");
            }
            let run = dump(&args);
            assert_eq!(run.code, 3, "{cmd} on a missing directory");
            assert_eq!(run.stdout, "", "{cmd}: nothing printed on stdout");
            assert!(run.stderr.contains("no such file"), "{cmd}: {}", run.stderr);
        }
    }
    assert_eq!(dump(&[&"salvage", &nowhere, &tmp.path().join("o")]).code, 3);
    assert!(!tmp.path().join("o").exists());
    // A path that exists but is no store: damage (1).
    let not_a_store = tmp.path().join("empty");
    std::fs::create_dir(&not_a_store).unwrap();
    assert_eq!(dump(&[&"summary", &not_a_store]).code, 1);
}

/// Bad usage exits 2 with clap's message; a closed output pipe is not a
/// crash.
#[test]
fn usage_errors_and_closed_pipes() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("store");
    build_store(&dir);
    assert_eq!(dump(&[&"frobnicate"]).code, 2);
    assert_eq!(dump(&[&"journal", &dir, &"a", &"--range", &"5..2"]).code, 2);
    assert_eq!(dump(&[&"journal", &dir, &"a", &"--hex", &"--utf8"]).code, 2);
    assert_eq!(dump(&[&"journal", &dir, &"zz", &"--hex-id"]).code, 2);
    assert_eq!(dump(&[&"summary"]).code, 2);
    assert_eq!(dump(&[&"--help"]).code, 0);

    // Far more JSON than a pipe buffers, so the writes after the reader
    // is gone meet a closed pipe.
    let mut child = std::process::Command::new(assert_cmd::cargo::cargo_bin("journal-dump"))
        .arg("segments")
        .arg(&dir)
        .arg("--json")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut first = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut first)
        .unwrap();
    // The reader is dropped: the rest of the output meets a closed pipe.
    let out = child.wait_with_output().unwrap();
    assert_eq!(first.trim(), "{");
    assert!(
        !String::from_utf8_lossy(&out.stderr).contains("panicked"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(matches!(out.status.code(), Some(0 | 1)), "{:?}", out.status);
}

/// The records of the active segment, as offsets.
fn active_records(dir: &Path) -> Vec<u64> {
    SegmentFile::read(&active_segment(dir))
        .unwrap()
        .scan(0, None, false)
        .iter()
        .filter_map(|i| match i {
            ScanItem::Record { offset, .. } => Some(*offset),
            _ => None,
        })
        .collect()
}

/// Zeros the sync mark at the end of the data of segment file `path`, as a
/// process that died before its close (and after its last sync) leaves it.
fn remove_sync_mark(path: &Path) {
    let file = SegmentFile::read(path).unwrap();
    let mut bytes = std::fs::read(path).unwrap();
    for item in file.scan(0, None, false) {
        if let ScanItem::SyncMark { offset, .. } = item {
            bytes[offset as usize..offset as usize + 32].fill(0);
        }
    }
    std::fs::write(path, bytes).unwrap();
}

/// Salvage tells a torn tail from damage as recovery does. Three batches
/// written with `SyncMode::Never` (never synced, so each record's
/// `synced_through` stays below them all, and the process dies before its
/// close: no sync mark) and the middle one damaged: a
/// torn tail; the third record is dropped, exactly as `Store::open` drops
/// it. The same under `SyncMode::Always` (each record says the ones before
/// it were synced): damage; `Store::open` refuses the store and salvage
/// keeps the third record.
#[test]
fn salvage_tells_a_torn_tail_from_damage() {
    for (sync, torn) in [(SyncMode::Never, true), (SyncMode::Always, false)] {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("store");
        build_store(&dir);
        let before = active_records(&dir).len();
        let store = Store::open(&dir, Options { sync, ..options() }).unwrap();
        for (journal, value) in [("n", "one"), ("n", "two"), ("other", "three")] {
            let mut b = WriteBatch::new();
            b.append(journal.as_bytes(), value.as_bytes());
            store.write(&b).unwrap();
        }
        store.close().unwrap();
        if torn {
            remove_sync_mark(&active_segment(&dir));
        }
        let records = active_records(&dir);
        assert_eq!(records.len(), before + 3);
        let middle = records[before + 1];
        flip(&active_segment(&dir), middle + 40);

        let out = tmp.path().join("out");
        let run = dump(&[&"salvage", &dir, &out, &"--json"]);
        assert_eq!(run.code, 1, "damage is reported: {}", run.stdout);
        let v = run.json();
        let name = active_segment(&dir)
            .file_name()
            .unwrap()
            .to_string_lossy()
            .into_owned();
        assert!(
            v["problems"].as_array().unwrap().iter().any(|p| p["file"]
                .as_str()
                .unwrap()
                .ends_with(&name)
                && p["offset"] == middle),
            "{v}"
        );
        let salvaged = read_state(&out);
        assert_eq!(salvaged[&b"n"[..]].entries, vec![b"one".to_vec()]);
        if torn {
            assert_eq!(v["torn"].as_array().unwrap().len(), 1, "{v}");
            assert!(!salvaged.contains_key(&b"other"[..]));
            // Recovery agrees: the same state.
            assert_eq!(read_state(&dir), salvaged);
        } else {
            assert_eq!(v["torn"], Value::Array(vec![]));
            assert_eq!(salvaged[&b"other"[..]].entries, vec![b"three".to_vec()]);
            assert!(
                matches!(Store::open(&dir, options()), Err(Error::Corruption { .. })),
                "recovery calls it damage"
            );
        }
    }
}

// ---------------------------------------------------------------------------
// The status file.

/// Polls `summary --json` until its status block satisfies `want` (10 s
/// at most); returns the JSON and the text run that followed it.
fn summary_when(dir: &Path, what: &str, want: impl Fn(&Value) -> bool) -> (Value, Run) {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        let run = dump(&[&"summary", &dir, &"--json"]);
        let v = run.json();
        if want(&v["status"]) {
            return (v, dump(&[&"summary", &dir]));
        }
        assert!(
            std::time::Instant::now() < deadline,
            "{what}: summary never showed it; last: {}",
            run.stdout
        );
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
}

/// `summary` shows what only the process holding the store knows, through
/// the store's `STATUS` file: a snapshot held in this process (count,
/// generation, bytes only it keeps), its release, a clean close; and says
/// plainly when there is no status file, when it is unreadable and when it
/// is stale. None of these makes the summary fail.
#[test]
fn summary_shows_pinned_snapshots_from_the_status_file() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("store");
    let store = Store::open(
        &dir,
        Options {
            status_interval: Some(std::time::Duration::from_millis(50)),
            ..options()
        },
    )
    .unwrap();
    // Journal "big" over several segments, freed while a snapshot holds it.
    for i in 0..60 {
        let mut b = WriteBatch::new();
        b.append(b"big", &entry("big", i));
        store.write(&b).unwrap();
    }
    let mut b = WriteBatch::new();
    b.append(b"small", b"s");
    store.write(&b).unwrap();
    let held = store.snapshot();
    let mut b = WriteBatch::new();
    b.delete_journal(b"big");
    store.write(&b).unwrap();
    let stats = store.stats();
    assert!(stats.pinned_only_bytes > 0, "nothing pinned: {stats:?}");

    let (v, text) = summary_when(&dir, "held snapshot", |s| s["pinned_snapshots"] == 1);
    assert_eq!(v["ok"], true, "{v}");
    let s = &v["status"];
    assert_eq!(s["state"], "open");
    assert_eq!(s["stale"], false);
    assert_eq!(s["pid"], std::process::id());
    assert_eq!(s["interval_ms"], 50);
    assert_eq!(s["writes_stopped"], false);
    assert_eq!(s["oldest_pinned_generation"], held.generation());
    assert_eq!(s["pinned_only_bytes"], stats.pinned_only_bytes);
    assert_eq!(s["generation"], stats.generation);
    assert_eq!(s["journals"], 1);
    assert!(s["oldest_pinned_age_ms"].is_u64() && s["age_ms"].is_u64());
    assert_eq!(s["error"], Value::Null);
    // "written 0.1 s ago by pid N": the age varies.
    assert!(
        text.stdout.contains("status       store open: written ")
            && text
                .stdout
                .contains(&format!("ago by pid {}", std::process::id())),
        "{}",
        text.stdout
    );
    assert!(
        text.stdout.contains(&format!(
            "pinned       1 snapshot; the oldest pins generation {}",
            held.generation()
        )) && text.stdout.contains(&format!(
            "{} bytes on disk kept only for snapshots",
            stats.pinned_only_bytes
        )),
        "{}",
        text.stdout
    );
    assert_eq!(text.code, 0, "{}", text.stdout);

    drop(held);
    let (v, text) = summary_when(&dir, "snapshot dropped", |s| s["pinned_snapshots"] == 0);
    assert_eq!(v["status"]["oldest_pinned_generation"], Value::Null);
    assert_eq!(v["status"]["pinned_only_bytes"], 0);
    assert!(
        text.stdout.contains("pinned       0 snapshots\n"),
        "{}",
        text.stdout
    );

    store.close().unwrap();
    let run = dump(&[&"summary", &dir, &"--json"]);
    assert_eq!(run.code, 0, "{}", run.stdout);
    assert_eq!(run.json()["status"]["state"], "closed");
    let text = dump(&[&"summary", &dir]);
    assert!(
        text.stdout
            .contains("status       store closed cleanly: written at close"),
        "{}",
        text.stdout
    );

    // An "open" file left long ago: its writer died or hangs.
    let closed = std::fs::read_to_string(dir.join("STATUS")).unwrap();
    let old: String = closed
        .lines()
        .map(|l| match l.split_once('=') {
            Some(("open", _)) => "open=true".to_owned(),
            Some(("written_unix_ms", _)) => "written_unix_ms=1000".to_owned(),
            _ => l.to_owned(),
        })
        .map(|l| l + "\n")
        .collect();
    std::fs::write(dir.join("STATUS"), old).unwrap();
    let run = dump(&[&"summary", &dir, &"--json"]);
    assert_eq!(run.code, 0, "{}", run.stdout);
    assert_eq!(run.json()["status"]["stale"], true);
    assert!(dump(&[&"summary", &dir])
        .stdout
        .contains("status       STALE"));

    // Unreadable: reported in the block, not as a problem of the store.
    std::fs::write(dir.join("STATUS"), b"version=1\npid=").unwrap();
    let run = dump(&[&"summary", &dir, &"--json"]);
    assert_eq!(run.code, 0, "{}", run.stdout);
    let v = run.json();
    assert_eq!(v["status"]["state"], "unreadable");
    assert!(v["status"]["error"].is_string());
    assert_eq!(v["status"]["pinned_snapshots"], Value::Null);
    assert!(dump(&[&"summary", &dir])
        .stdout
        .contains("status       unreadable: "));

    // None at all.
    std::fs::remove_file(dir.join("STATUS")).unwrap();
    let run = dump(&[&"summary", &dir, &"--json"]);
    assert_eq!(run.code, 0, "{}", run.stdout);
    assert_eq!(run.json()["status"]["state"], "absent");
    assert!(dump(&[&"summary", &dir])
        .stdout
        .contains("status       none: no STATUS file"));
}

// ---------------------------------------------------------------------------
// Salvage is honest: every loss is named and fails the run.

/// The salvage of `dir` into a fresh directory, as JSON, and the salvaged
/// state (if a store was written).
fn salvage_of(dir: &Path, extra: &[&str]) -> (Run, Value, Option<State>) {
    let out = dir.with_extension(format!("out{}", fastrand::u32(..)));
    let mut args: Vec<&dyn AsRef<std::ffi::OsStr>> = vec![&"salvage", &dir, &out, &"--json"];
    for e in extra {
        args.push(e);
    }
    let run = dump(&args);
    let v = run.json();
    let state = (v["written"] == true).then(|| read_state(&out));
    (run, v, state)
}

/// A listed segment deleted: salvage exits 1, names the file as missing,
/// and says that any journal may differ (the lost batches' journals are
/// unknown). On the old code it exited 0 with `ok: true`.
#[test]
fn salvage_fails_on_a_missing_segment() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("store");
    build_store(&dir);
    let (path, _, _) = a_sealed_record(&dir);
    std::fs::remove_file(&path).unwrap();
    let (run, v, _) = salvage_of(&dir, &[]);
    assert_eq!(run.code, 1, "{}", run.stdout);
    assert_eq!(v["ok"], false);
    let name = path.file_name().unwrap().to_string_lossy().into_owned();
    assert!(v["missing"][0].as_str().unwrap().ends_with(&name), "{v}");
    assert!(
        v["lost_ranges"]
            .as_array()
            .unwrap()
            .iter()
            .any(|r| r["file"].as_str().unwrap().ends_with(&name) && r["journals"].is_null()),
        "{v}"
    );
    assert_eq!(v["all_suspect"], true);
    assert!(!v["suspect"].as_array().unwrap().is_empty());
    // Text names the loss too.
    let out = tmp.path().join("text-out");
    let text = dump(&[&"salvage", &dir, &out]);
    assert_eq!(text.code, 1);
    assert!(text.stdout.contains(&name), "{}", text.stdout);
}

/// A byte flipped in MANIFEST: salvage still copies what it can, but exits
/// 1 and says the manifest could not be used.
#[test]
fn salvage_fails_on_a_damaged_manifest() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("store");
    let expected = build_store(&dir);
    flip(&dir.join("MANIFEST"), 20);
    let (run, v, state) = salvage_of(&dir, &[]);
    assert_eq!(run.code, 1, "{}", run.stdout);
    assert!(v["manifest_error"].is_string(), "{v}");
    assert!(
        v["problems"]
            .as_array()
            .unwrap()
            .iter()
            .any(|p| p["file"].as_str().unwrap().ends_with("MANIFEST")),
        "{v}"
    );
    // Every file read whole: the journals survive.
    let state = state.expect("written");
    assert_eq!(state[&b"delta"[..]], expected[&b"delta"[..]]);
}

/// A sealed segment cut short: salvage exits 1, names the place where the
/// file ends and the LSNs after the last intact record there, and makes
/// every journal suspect (what the lost bytes held is unknown); no journal
/// vanishes without the report saying so.
#[test]
fn salvage_fails_on_a_truncated_segment() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("store");
    build_store(&dir);
    let m = inspect::read_manifest(&dir.join("MANIFEST")).unwrap();
    let sealed = m
        .segments
        .iter()
        .find(|s| s.sealed_len.is_some_and(|l| l > 2048))
        .expect("a sealed segment");
    let path = dir.join(&sealed.file_name);
    let f = std::fs::OpenOptions::new().write(true).open(&path).unwrap();
    f.set_len(1024).unwrap();
    drop(f);
    let (run, v, _) = salvage_of(&dir, &[]);
    assert_eq!(run.code, 1, "{}", run.stdout);
    let ranges = v["lost_ranges"].as_array().unwrap();
    assert!(
        ranges
            .iter()
            .any(|r| r["file"].as_str().unwrap().ends_with(&sealed.file_name)
                && r["first_lsn"].is_u64()),
        "{v}"
    );
    assert_eq!(v["all_suspect"], true, "{v}");
}

/// A damaged batch in the active segment, a truncate plus an append, with
/// synced batches after it (so it is damage, not a torn tail): salvage
/// names the lost LSN and the journal it touched, exits 1, and with
/// `--suspect drop` leaves that journal out instead of serving the
/// superseded entry. On the old code the salvaged store returned the
/// entry from before the reset and `lost` was empty.
#[test]
fn salvage_names_a_lost_batch_and_its_journal() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("store");
    build_store(&dir);
    let store = Store::open(&dir, options()).unwrap();
    for i in 0..20 {
        let mut b = WriteBatch::new();
        b.append(b"raft", format!("old {i}").as_bytes());
        store.write(&b).unwrap();
    }
    let mut b = WriteBatch::new();
    b.truncate(b"raft", 15).append(b"raft", b"new 15");
    let lost_lsn = store.write(&b).unwrap();
    let mut b = WriteBatch::new();
    b.append(b"other", b"after");
    store.write(&b).unwrap();
    store.close().unwrap();
    let active = active_segment(&dir);
    let file = SegmentFile::read(&active).unwrap();
    let (record, op) = file
        .scan(0, None, false)
        .iter()
        .find_map(|i| match i {
            ScanItem::Record {
                offset, lsn, ops, ..
            } if *lsn == lost_lsn => Some((*offset, ops[1].offset)),
            _ => None,
        })
        .expect("the reset batch in the active segment");
    // A byte of the appended value ("new 15"): the payload CRC fails.
    flip(&active, op + 32 + 4 + 2);

    let (run, v, state) = salvage_of(&dir, &[]);
    assert_eq!(run.code, 1, "{}", run.stdout);
    let ranges = v["lost_ranges"].as_array().unwrap();
    assert!(
        ranges.iter().any(|r| r["offset"] == record
            && r["first_lsn"] == lost_lsn
            && r["last_lsn"] == lost_lsn
            && r["journals"][0]["utf8"] == "raft"),
        "{v}"
    );
    assert_eq!(v["all_suspect"], false, "{v}");
    let suspect: Vec<&str> = v["suspect"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["journal"]["utf8"].as_str().unwrap())
        .collect();
    assert_eq!(suspect, ["raft"], "{v}");
    // Kept (the default): the superseded entry is there, and named.
    let state = state.unwrap();
    assert_eq!(state[&b"raft"[..]].entries.len(), 20);
    assert_eq!(state[&b"other"[..]].entries, vec![b"after".to_vec()]);

    let (run, v, state) = salvage_of(&dir, &["--suspect", "drop"]);
    assert_eq!(run.code, 1);
    assert_eq!(v["suspect"][0]["dropped"], true, "{v}");
    assert_eq!(v["suspect_policy"], "drop");
    let state = state.unwrap();
    assert!(!state.contains_key(&b"raft"[..]), "dropped");
    assert_eq!(state[&b"other"[..]].entries, vec![b"after".to_vec()]);
}

// ---------------------------------------------------------------------------
// verify on a store another process writes, compacts and checkpoints.

const CHURN_ENV: &str = "JOURNAL_DUMP_TEST_CHURN_DIR";

/// Not a test: the child process of `verify_is_clean_on_a_running_store`.
/// Opens the store in `$JOURNAL_DUMP_TEST_CHURN_DIR` and, in rounds until
/// `stop` arrives on stdin, appends, trims and deletes journals (so that
/// segments empty out), holds a snapshot across a round (pinned segments),
/// compacts and, every third round, writes a checkpoint; it prints
/// `CHURN-ROUND n` after each round and `CHURN-STOPPED` once stopped. End
/// of input closes the store.
#[test]
#[ignore = "helper process for verify_is_clean_on_a_running_store"]
fn churn_process() {
    use std::sync::atomic::{AtomicBool, Ordering};
    let dir = PathBuf::from(std::env::var_os(CHURN_ENV).expect("run only as a child"));
    let store = Store::open(
        &dir,
        Options {
            sync: SyncMode::Never,
            segment_size: 8192,
            background_compaction: true,
            status_interval: Some(std::time::Duration::from_millis(50)),
            ..Options::default()
        },
    )
    .expect("child open");
    let stop = std::sync::Arc::new(AtomicBool::new(false));
    let reader = {
        let stop = stop.clone();
        std::thread::spawn(move || {
            let mut lines = std::io::stdin().lines();
            for l in lines.by_ref() {
                if l.expect("stdin").trim() == "stop" {
                    break;
                }
            }
            stop.store(true, Ordering::SeqCst);
            // The rest of the input: its end closes the store.
            for _ in lines {}
        })
    };
    let ckpt_root = dir.with_extension("checkpoints");
    let mut held = None;
    let mut round = 0u64;
    while !stop.load(Ordering::SeqCst) {
        for i in 0..40u64 {
            let mut b = WriteBatch::new();
            let j = format!("j{}", (round + i) % 7);
            b.append(j.as_bytes(), &entry(&j, i));
            if i % 10 == 9 {
                b.set_metadata(j.as_bytes(), format!("round {round}").as_bytes());
            }
            store.write(&b).expect("child write");
        }
        let mut b = WriteBatch::new();
        b.delete_journal(format!("j{}", (round + 3) % 7).as_bytes())
            .trim_prefix(format!("j{}", (round + 5) % 7).as_bytes(), 1 << 20);
        store.write(&b).expect("child write");
        // The previous round's snapshot goes; this one pins its segments
        // through the next round.
        held = Some(store.snapshot());
        store.compact().expect("child compact");
        if round.is_multiple_of(3) {
            let _ = std::fs::remove_dir_all(&ckpt_root);
            store.checkpoint(&ckpt_root).expect("child checkpoint");
        }
        println!("CHURN-ROUND {round}");
        round += 1;
    }
    drop(held);
    store.sync().expect("child sync");
    println!("CHURN-STOPPED");
    reader.join().expect("stdin reader");
    store.close().expect("child close");
}

/// Twenty runs of `verify` against a store that another process is
/// writing, compacting and checkpointing, each after the child finished
/// another round: every one exits 0 (what it cannot tell from a race it
/// checks again; leftovers and pins are notes). Then, the child idle, a
/// flipped byte in a sealed segment is still found.
#[test]
fn verify_is_clean_on_a_running_store() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("store");
    build_store(&dir);
    let mut child = std::process::Command::new(std::env::current_exe().unwrap())
        .args([
            "churn_process",
            "--exact",
            "--ignored",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(CHURN_ENV, &dir)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("spawn churn");
    let mut stdin = child.stdin.take().unwrap();
    let mut stdout = BufReader::new(child.stdout.take().unwrap());
    let mut wait_for = |token: &str| {
        let mut line = String::new();
        loop {
            line.clear();
            let n = stdout.read_line(&mut line).expect("child output");
            assert!(n > 0, "child exited before printing {token}");
            if line.contains(token) {
                return;
            }
        }
    };
    wait_for("CHURN-ROUND 2");
    let mut noted = 0;
    for run in 0..20 {
        // Each run after another round of writes, compaction and pins.
        wait_for("CHURN-ROUND");
        let v = dump(&[&"verify", &dir, &"--json"]);
        assert_eq!(v.code, 0, "run {run} on a running store:\n{}", v.stdout);
        noted += v.json()["notes"].as_array().unwrap().len();
    }
    eprintln!("20 verify runs exited 0; {noted} notes in all");
    writeln!(stdin, "stop").unwrap();
    wait_for("CHURN-STOPPED");
    let m = inspect::read_manifest(&dir.join("MANIFEST")).unwrap();
    let (path, record) = m
        .segments
        .iter()
        .filter(|s| s.sealed_len.is_some())
        .find_map(|s| {
            let path = dir.join(&s.file_name);
            let file = SegmentFile::read(&path).ok()?;
            file.scan(0, s.sealed_len, false)
                .iter()
                .find_map(|i| match i {
                    ScanItem::Record {
                        offset,
                        payload_len,
                        ..
                    } if *payload_len > 40 => Some((path.clone(), *offset)),
                    _ => None,
                })
        })
        .expect("a sealed record");
    flip(&path, record + 40);
    let v = dump(&[&"verify", &dir, &"--json"]);
    assert_eq!(v.code, 1, "{}", v.stdout);
    let name = path.file_name().unwrap().to_string_lossy().into_owned();
    assert!(
        v.json()["problems"]
            .as_array()
            .unwrap()
            .iter()
            .any(|p| p["file"].as_str().unwrap().ends_with(&name) && p["offset"] == record),
        "{}",
        v.stdout
    );
    // Put the byte back so that the child closes a healthy store.
    flip(&path, record + 40);
    drop(stdin);
    assert!(child.wait().unwrap().success(), "child failed");
}

// ---------------------------------------------------------------------------
// journals, export and import.

/// `journals` lists every journal with its figures, filters by prefix and
/// ranks with `--top`; its JSON shape is pinned.
#[test]
fn journals_lists_filters_and_ranks() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("store");
    let expected = build_store(&dir);
    let run = dump(&[&"journals", &dir, &"--json"]);
    assert_eq!(run.code, 0, "{}", run.stdout);
    let v = run.json();
    let mut keys: Vec<&str> = v.as_object().unwrap().keys().map(|k| k.as_str()).collect();
    keys.sort();
    assert_eq!(
        keys,
        ["command", "dir", "journals", "matched", "ok", "order", "prefix", "problems"]
    );
    let mut row: Vec<&str> = v["journals"][0]
        .as_object()
        .unwrap()
        .keys()
        .map(|k| k.as_str())
        .collect();
    row.sort();
    assert_eq!(
        row,
        [
            "end_index",
            "entries",
            "entry_bytes",
            "first_index",
            "id",
            "metadata_bytes"
        ]
    );
    assert_eq!(v["matched"], expected.len() as u64);
    for j in v["journals"].as_array().unwrap() {
        let id = hex_decode(j["id"]["hex"].as_str().unwrap());
        let want = &expected[&id];
        assert_eq!(j["first_index"], want.first);
        assert_eq!(j["entries"], want.entries.len() as u64);
        let bytes: usize = want.entries.iter().map(Vec::len).sum();
        assert_eq!(j["entry_bytes"], bytes as u64);
        assert_eq!(
            j["metadata_bytes"].as_u64(),
            want.metadata.as_ref().map(|m| m.len() as u64)
        );
    }
    let p = dump(&[&"journals", &dir, &"--prefix", &"al", &"--json"]).json();
    assert_eq!(p["matched"], 1);
    assert_eq!(p["journals"][0]["id"]["utf8"], "alpha");
    let top = dump(&[
        &"journals",
        &dir,
        &"--top",
        &"2",
        &"--by",
        &"entries",
        &"--json",
    ])
    .json();
    assert_eq!(top["order"], "entries");
    let names: Vec<&str> = top["journals"]
        .as_array()
        .unwrap()
        .iter()
        .map(|j| j["id"]["utf8"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["alpha", "delta"]);
    let text = dump(&[&"journals", &dir, &"--top", &"1"]);
    assert!(text.stdout.contains("alpha"), "{}", text.stdout);
    assert!(
        text.stdout.contains("KiB"),
        "human-readable size: {}",
        text.stdout
    );
}

fn hex_decode(s: &str) -> Vec<u8> {
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
        .collect()
}

/// `export` then `import` rebuilds the same state (journals at any index,
/// empty and absent metadata, a non-UTF-8 id) in a new store; the file is
/// one JSON object a line; both commands' JSON shapes are pinned; a bad
/// line fails the import with its line number.
#[test]
fn export_and_import_round_trip() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("store");
    let expected = build_store(&dir);
    let before = files(&dir);
    let file = tmp.path().join("dump.jsonl");
    let run = dump(&[&"export", &dir, &file, &"--json"]);
    assert_eq!(run.code, 0, "{}", run.stdout);
    let v = run.json();
    let mut keys: Vec<&str> = v.as_object().unwrap().keys().map(|k| k.as_str()).collect();
    keys.sort();
    assert_eq!(
        keys,
        ["batches", "bytes", "command", "dir", "entries", "file", "journals", "ok", "problems"]
    );
    assert_eq!(v["journals"], expected.len() as u64);
    assert_eq!(files(&dir), before, "export changed the store");
    let text = std::fs::read_to_string(&file).unwrap();
    for line in text.lines() {
        serde_json::from_str::<Value>(line).expect("one JSON object a line");
    }
    assert!(text.lines().next().unwrap().contains("journal-dump-export"));

    let out = tmp.path().join("imported");
    let run = dump(&[&"import", &file, &out, &"--json"]);
    assert_eq!(run.code, 0, "{}", run.stdout);
    assert_eq!(run.json()["command"], "import");
    assert_eq!(read_state(&out), expected);
    // Into a store that exists: refused.
    assert_eq!(dump(&[&"import", &file, &out]).code, 1);
    // Through a pipe: `export DIR -` writes the data to stdout.
    let piped = dump(&[&"export", &dir, &"-"]);
    assert_eq!(piped.code, 0);
    assert_eq!(piped.stdout, text);

    let bad = tmp.path().join("bad.jsonl");
    let mut lines: Vec<&str> = text.lines().collect();
    lines.insert(2, "{\"journal\": \"zz\", \"entries\": []}");
    std::fs::write(&bad, lines.join("\n")).unwrap();
    let run = dump(&[&"import", &bad, &tmp.path().join("bad-out"), &"--json"]);
    assert_eq!(run.code, 1);
    assert!(
        run.json()["problems"][0]["reason"]
            .as_str()
            .unwrap()
            .contains("line 3"),
        "{}",
        run.stdout
    );
}

/// `segments --journal ID --lsn A..B` lists only the records in the LSN
/// range with an operation on that journal (and only those operations);
/// `journal --hex` prints hexdumps, and long values are cut in text
/// unless `--full` (JSON always holds them whole).
#[test]
fn segment_filters_hexdumps_and_cut_values() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("store");
    build_store(&dir);
    let all = dump(&[&"segments", &dir, &"--json"]).json();
    let lsns = |v: &Value| -> Vec<(u64, Vec<String>)> {
        v["segments"]
            .as_array()
            .unwrap()
            .iter()
            .flat_map(|s| s["items"].as_array().unwrap().clone())
            .filter(|i| i["type"] == "record")
            .map(|i| {
                let journals = i["ops"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|o| o["journal"]["hex"].as_str().unwrap().to_owned())
                    .collect();
                (i["lsn"].as_u64().unwrap(), journals)
            })
            .collect()
    };
    let every = lsns(&all);
    let delta = hex_of(b"delta");
    let want: Vec<(u64, Vec<String>)> = every
        .iter()
        .filter(|(lsn, js)| *lsn >= 60 && js.contains(&delta))
        .map(|(lsn, _)| (*lsn, vec![delta.clone()]))
        .collect();
    assert_eq!(want.len(), 3, "the three delta batches");
    let run = dump(&[
        &"segments",
        &dir,
        &"--journal",
        &"delta",
        &"--lsn",
        &"60..",
        &"--json",
    ]);
    assert_eq!(run.code, 0);
    assert_eq!(lsns(&run.json()), want);
    let one = want[1].0.to_string();
    let run = dump(&[&"segments", &dir, &"--lsn", &one, &"--json"]);
    assert_eq!(lsns(&run.json()).len(), 1);

    // Text cuts a 150-byte entry; --full shows it whole; JSON is whole.
    let cut = dump(&[&"journal", &dir, &"delta", &"--range", &"0"]);
    assert!(cut.stdout.contains("--full shows all"), "{}", cut.stdout);
    let full = dump(&[&"journal", &dir, &"delta", &"--range", &"0", &"--full"]);
    assert!(!full.stdout.contains("--full shows all"), "{}", full.stdout);
    assert!(
        full.stdout.contains(&"."[..].repeat(100)),
        "{}",
        full.stdout
    );
    let j = dump(&[&"journal", &dir, &"delta", &"--json"]).json();
    assert_eq!(
        j["entries"][0]["value"]["value"].as_str().unwrap().len(),
        150
    );
    // --hex: a hexdump with offsets and the printable text.
    let hexed = dump(&[&"journal", &dir, &"delta", &"--range", &"0", &"--hex"]);
    assert!(hexed.stdout.contains("0000:"), "{}", hexed.stdout);
    assert!(hexed.stdout.contains("64 65 6c 74 61"), "{}", hexed.stdout);
}

fn hex_of(b: &[u8]) -> String {
    b.iter().map(|b| format!("{b:02x}")).collect()
}

/// A store whose close wrote an index checkpoint; returns its generation.
/// Segment 1 holds one live entry of `keep` among the dead entries of
/// `old` once `old` is deleted, so a compaction rewrites it.
fn store_with_index_checkpoint(dir: &Path) -> u64 {
    let with_checkpoint = Options {
        index_checkpoint_bytes: Some(u64::MAX),
        ..options()
    };
    let store = Store::open(dir, with_checkpoint).unwrap();
    let mut b = WriteBatch::new();
    b.append(b"keep", &entry("keep", 0))
        .set_metadata(b"keep", b"m");
    store.write(&b).unwrap();
    for i in 0..100 {
        let mut b = WriteBatch::new();
        b.append(b"old", &entry("old", i));
        store.write(&b).unwrap();
    }
    store.close().unwrap();
    inspect::read_manifest(&inspect::manifest_path(dir))
        .unwrap()
        .generation
}

/// Index checkpoint notes of `verify --json` (exit status, reasons).
fn index_notes(dir: &Path) -> (i32, Vec<String>) {
    let run = dump(&[&"verify", &dir, &"--json"]);
    let v = run.json();
    assert_eq!(v["problems"], Value::Array(vec![]), "{}", run.stdout);
    let notes = v["notes"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|n| n["file"].as_str().unwrap().contains("index-"))
        .map(|n| n["reason"].as_str().unwrap().to_owned())
        .collect();
    (run.code, notes)
}

/// `index DIR` shows the checkpoint a clean close wrote, in the documented
/// JSON shape, as continued by the manifest; after a compaction (which
/// makes every older checkpoint unusable) it shows it as stale, and
/// `verify` notes it without failing.
#[test]
fn index_checkpoints_are_shown_and_stale_ones_noted() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("store");
    let generation = store_with_index_checkpoint(&dir);
    let name = inspect::index_checkpoint_file_name(generation);
    let before = files(&dir);
    assert!(before.contains_key(&name), "{:?}", before.keys());

    let run = dump(&[&"index", &dir, &"--json"]);
    assert_eq!(run.code, 0, "{}", run.stdout);
    let v = run.json();
    let keys = |v: &Value| -> Vec<String> {
        let mut k: Vec<String> = v.as_object().unwrap().keys().cloned().collect();
        k.sort();
        k
    };
    let sorted = |want: &[&str]| -> Vec<String> {
        let mut w: Vec<String> = want.iter().map(|s| s.to_string()).collect();
        w.sort();
        w
    };
    assert_eq!(
        keys(&v),
        sorted(&[
            "command",
            "ok",
            "problems",
            "dir",
            "generation",
            "checkpoints"
        ])
    );
    assert_eq!(v["command"], "index");
    assert_eq!(v["ok"], true);
    assert_eq!(v["generation"], generation);
    let cps = v["checkpoints"].as_array().unwrap();
    assert_eq!(cps.len(), 1);
    let cp = &cps[0];
    assert_eq!(
        keys(cp),
        sorted(&[
            "file",
            "generation",
            "last_lsn",
            "active_end",
            "segments",
            "journals",
            "entries",
            "continued",
            "error"
        ])
    );
    assert_eq!(cp["file"], name.as_str());
    assert_eq!(cp["generation"], generation);
    assert_eq!(cp["last_lsn"], 101);
    assert_eq!(cp["journals"], 2);
    assert_eq!(cp["entries"], 101);
    assert_eq!(cp["continued"], true);
    assert_eq!(cp["error"], Value::Null);
    let manifest = inspect::read_manifest(&inspect::manifest_path(&dir)).unwrap();
    let segments: Vec<(u64, Option<u64>)> = cp["segments"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| (s["id"].as_u64().unwrap(), s["sealed_len"].as_u64()))
        .collect();
    let listed: Vec<(u64, Option<u64>)> = manifest
        .segments
        .iter()
        .map(|s| (u64::from(s.id), s.sealed_len))
        .collect();
    assert_eq!(segments, listed);
    assert!(segments.len() > 2, "the store rolled: {segments:?}");
    let text = dump(&[&"index", &dir]);
    assert_eq!(text.code, 0);
    assert!(text.stdout.contains(&name), "{}", text.stdout);
    assert!(
        text.stdout.contains("continued by the manifest: yes"),
        "{}",
        text.stdout
    );
    assert_eq!(index_notes(&dir), (0, vec![]));
    assert_eq!(files(&dir), before, "index and verify change nothing");

    // Without index checkpoints the store leaves the old file alone; the
    // compaction puts a new segment in place of segment 1.
    let store = Store::open(&dir, options()).unwrap();
    let mut b = WriteBatch::new();
    b.delete_journal(b"old");
    store.write(&b).unwrap();
    store.compact().unwrap();
    store.close().unwrap();
    let v = dump(&[&"index", &dir, &"--json"]).json();
    assert_eq!(v["ok"], true);
    assert!(v["generation"].as_u64().unwrap() > generation);
    let cp = &v["checkpoints"][0];
    assert_eq!(cp["file"], name.as_str());
    assert_eq!(cp["continued"], false, "{v:#}");
    let text = dump(&[&"index", &dir]);
    assert!(text.stdout.contains("no: stale"), "{}", text.stdout);
    let (code, notes) = index_notes(&dir);
    assert_eq!(code, 0, "a stale checkpoint is a note, not damage");
    assert_eq!(notes.len(), 1, "{notes:?}");
    assert!(notes[0].contains("stale index checkpoint"), "{notes:?}");
    let text = dump(&[&"verify", &dir]);
    assert!(text.stdout.contains("NOTE     "), "{}", text.stdout);
    assert!(text.stdout.contains(&name), "{}", text.stdout);
}

/// A checkpoint that does not decode (a flipped byte, a cut file, a header
/// naming another generation than its file name) is shown with the reason
/// by `index` and noted by `verify`, both exiting 0: open ignores such a
/// file, so the store is not damaged.
#[test]
fn damaged_index_checkpoints_are_notes() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("store");
    let generation = store_with_index_checkpoint(&dir);
    let path = dir.join(inspect::index_checkpoint_file_name(generation));
    let good = std::fs::read(&path).unwrap();
    let renamed = dir.join(inspect::index_checkpoint_file_name(generation - 1));
    // (what, how it is damaged, the reason given)
    type Case<'a> = (&'a str, Box<dyn Fn() + 'a>, &'a str);
    let cases: Vec<Case<'_>> = vec![
        (
            "flipped body byte",
            Box::new(|| {
                let mut b = good.clone();
                b[80] ^= 0x01;
                std::fs::write(&path, b).unwrap();
            }),
            "body checksum mismatch",
        ),
        (
            "flipped header byte",
            Box::new(|| {
                let mut b = good.clone();
                b[20] ^= 0x01;
                std::fs::write(&path, b).unwrap();
            }),
            "header checksum mismatch",
        ),
        (
            "cut short",
            Box::new(|| std::fs::write(&path, &good[..40]).unwrap()),
            "shorter than its header",
        ),
        (
            "another generation's name",
            Box::new(|| {
                std::fs::remove_file(&path).unwrap();
                std::fs::write(&renamed, &good).unwrap();
            }),
            "its header names generation",
        ),
    ];
    for (what, damage, reason) in cases {
        damage();
        let run = dump(&[&"index", &dir, &"--json"]);
        assert_eq!(run.code, 0, "{what}: {}", run.stdout);
        let v = run.json();
        assert_eq!(v["ok"], true, "{what}");
        let cp = &v["checkpoints"][0];
        assert!(
            cp["error"].as_str().is_some_and(|e| e.contains(reason)),
            "{what}: {v:#}"
        );
        assert_eq!(cp["continued"], Value::Null, "{what}");
        assert_eq!(cp["journals"], Value::Null, "{what}");
        let text = dump(&[&"index", &dir]);
        assert!(text.stdout.contains("unusable"), "{what}: {}", text.stdout);
        let (code, notes) = index_notes(&dir);
        assert_eq!(code, 0, "{what}: a damaged checkpoint is a note");
        assert_eq!(notes.len(), 1, "{what}: {notes:?}");
        assert!(
            notes[0].contains("index checkpoint unusable") && notes[0].contains(reason),
            "{what}: {notes:?}"
        );
        // The engine agrees: the store opens, by a full replay.
        read_state(&dir);
        let _ = std::fs::remove_file(&renamed);
        std::fs::write(&path, &good).unwrap();
    }
}

/// A store copied while a roll's seal is pending (what a process crash
/// leaves, under `SyncMode::Never`): `MANIFEST` still names the sealed
/// segment as active and `MANIFEST.next` the new one. `verify` checks the
/// generation open adopts: it exits 0, notes `MANIFEST.next`, and does not
/// call the new segment unlisted; open then reads every entry written.
#[test]
fn a_roll_not_yet_swapped_in_is_verified_as_open_adopts_it() {
    let tmp = tempfile::tempdir().unwrap();
    let (dir, copy) = (tmp.path().join("store"), tmp.path().join("copy"));
    let options = Options {
        sync: SyncMode::Never,
        ..options()
    };
    let store = Store::open(&dir, options.clone()).unwrap();
    let mut written = 0u64;
    while store.stats().segments < 2 {
        let mut b = WriteBatch::new();
        b.append(b"j", &entry("j", written));
        store.write(&b).unwrap();
        written += 1;
    }
    for _ in 0..3 {
        let mut b = WriteBatch::new();
        b.append(b"j", &entry("j", written));
        store.write(&b).unwrap();
        written += 1;
    }
    assert!(dir.join("MANIFEST.next").exists(), "the seal is pending");
    std::fs::create_dir(&copy).unwrap();
    for e in std::fs::read_dir(&dir).unwrap() {
        let e = e.unwrap();
        std::fs::copy(e.path(), copy.join(e.file_name())).unwrap();
    }
    drop(store);

    let (code, problems, text) = verify_problems(&copy);
    assert_eq!(code, 0, "{text}");
    assert!(
        problems
            .iter()
            .any(|(f, _, r, repaired)| f == "MANIFEST.next"
                && r.contains("not yet swapped in")
                && *repaired),
        "{problems:#?}"
    );
    assert!(
        !problems.iter().any(|(_, _, r, _)| r.contains("not listed")),
        "{problems:#?}"
    );
    let reopened = Store::open(&copy, options).unwrap();
    let snap = reopened.snapshot();
    let j = snap.journal(b"j").unwrap();
    assert_eq!((j.first_index(), j.end_index()), (0, written));
}
