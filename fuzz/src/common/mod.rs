//! What more than one target uses: the options of every store the targets
//! open, scratch directories, tracing, and the byte-level pieces of the
//! file format (format-spec sections 3, 4, 6) the targets build files from.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::{Arc, OnceLock};

use journalstore::io::SimFs;
use journalstore::record::{FORMAT_VERSION, MANIFEST_VERSION};
use journalstore::{Options, SyncMode};

pub(crate) mod batches;
pub(crate) mod check;
pub(crate) mod template;

/// Segment size of every store the targets create: just above the minimum
/// that `Options::validate` accepts (64 + 32 + 4096 = 4192), so a few
/// batches fill a segment and rolls, seals and frees happen all the time.
pub const SEGMENT_SIZE: u64 = 4608;
/// `Options::max_entry_size` of the targets' stores (small, so the fuzzer
/// can reach `ValueTooLarge`).
pub(crate) const MAX_ENTRY: u64 = 1024;
/// `Options::max_metadata_size` of the targets' stores.
pub(crate) const MAX_METADATA: u64 = 256;
/// Inputs longer than this are ignored, which bounds the work per input.
pub(crate) const MAX_INPUT: usize = 1 << 16;
/// Size of a segment header and a record header (format-spec sections 3, 4).
pub(crate) const SEGMENT_HEADER_LEN: usize = 64;
pub(crate) const RECORD_HEADER_LEN: usize = 32;
pub(crate) const OP_HEADER_LEN: usize = 32;

/// Whether `FUZZ_TRACE` is set: the targets then print what they do, to
/// explain a finding (`FUZZ_TRACE=1 cargo fuzz run ... artifact`).
pub(crate) fn tracing() -> bool {
    static ON: OnceLock<bool> = OnceLock::new();
    *ON.get_or_init(|| std::env::var_os("FUZZ_TRACE").is_some())
}

macro_rules! trace {
    ($($arg:tt)*) => {
        if $crate::common::tracing() {
            eprintln!($($arg)*);
        }
    };
}
pub(crate) use trace;

/// A fresh scratch directory, in memory when the machine has `/dev/shm`.
pub(crate) fn scratch() -> tempfile::TempDir {
    let shm = Path::new("/dev/shm");
    if shm.is_dir() {
        if let Ok(dir) = tempfile::Builder::new()
            .prefix("journalstore-fuzz")
            .tempdir_in(shm)
        {
            return dir;
        }
    }
    tempfile::Builder::new()
        .prefix("journalstore-fuzz")
        .tempdir()
        .expect("create a scratch directory")
}

pub(crate) fn options(sim: &SimFs, sync: SyncMode) -> Options {
    Options {
        sync,
        segment_size: SEGMENT_SIZE,
        max_entry_size: MAX_ENTRY,
        max_metadata_size: MAX_METADATA,
        fs: Arc::new(sim.clone()),
        // A background thread would make runs nondeterministic (libFuzzer
        // needs an input to do the same thing every time); compaction is
        // to be driven explicitly from the inputs (see the hook in
        // `ops_model`).
        background_compaction: false,
        // No status file either: it holds a pid and a time (templates and
        // seeds would differ from run to run) and is no part of the format.
        status_interval: None,
        // No index checkpoints (on by default): the targets check what
        // open's full replay makes of their bytes, which a checkpoint
        // written at clean close would let open skip; checkpoint files
        // have their own target (`index_checkpoint_decode`).
        index_checkpoint_bytes: None,
        ..Options::default()
    }
}

pub(crate) fn align8(x: usize) -> usize {
    (x + 7) & !7
}

pub(crate) fn crc32(bytes: &[u8]) -> u32 {
    crc32fast::hash(bytes)
}

/// The files of a store directory (name -> bytes), without `LOCK`, which
/// every open creates.
pub(crate) fn dir_image(dir: &Path) -> BTreeMap<String, Vec<u8>> {
    let mut out = BTreeMap::new();
    for entry in std::fs::read_dir(dir).expect("list scratch directory") {
        let entry = entry.expect("list scratch directory");
        let name = entry.file_name().to_string_lossy().into_owned();
        if name == "LOCK" || !entry.file_type().is_ok_and(|t| t.is_file()) {
            continue;
        }
        let bytes = std::fs::read(entry.path()).expect("read scratch file");
        out.insert(name, bytes);
    }
    out
}

pub(crate) fn write_files(dir: &Path, files: &BTreeMap<String, Vec<u8>>) {
    for (name, bytes) in files {
        std::fs::write(dir.join(name), bytes).expect("write scratch file");
    }
}

/// A manifest as format-spec section 6 describes it: `segments` are
/// `(id, sealed_len)` with `u64::MAX` for the active one.
pub(crate) fn encode_manifest(
    generation: u64,
    next_segment_id: u64,
    lsn_floor: u64,
    segments: &[(u64, u64)],
) -> Vec<u8> {
    let mut out = b"JSTRMAN\0".to_vec();
    out.extend_from_slice(&MANIFEST_VERSION.to_le_bytes());
    out.extend_from_slice(&(segments.len() as u32).to_le_bytes());
    out.extend_from_slice(&generation.to_le_bytes());
    out.extend_from_slice(&next_segment_id.to_le_bytes());
    out.extend_from_slice(&lsn_floor.to_le_bytes());
    for &(id, sealed) in segments {
        out.extend_from_slice(&id.to_le_bytes());
        out.extend_from_slice(&sealed.to_le_bytes());
    }
    let crc = crc32(&out);
    out.extend_from_slice(&crc.to_le_bytes());
    out
}

/// A segment header as format-spec section 3.1 describes it.
pub(crate) fn segment_header(id: u64, capacity: u64, base_lsn: u64) -> [u8; SEGMENT_HEADER_LEN] {
    let mut h = [0u8; SEGMENT_HEADER_LEN];
    h[..8].copy_from_slice(b"JSTRSEG\0");
    h[8..12].copy_from_slice(&FORMAT_VERSION.to_le_bytes());
    h[12..16].copy_from_slice(&(SEGMENT_HEADER_LEN as u32).to_le_bytes());
    h[16..24].copy_from_slice(&id.to_le_bytes());
    h[24..32].copy_from_slice(&capacity.to_le_bytes());
    h[32..40].copy_from_slice(&base_lsn.to_le_bytes());
    let crc = crc32(&h[..60]);
    h[60..].copy_from_slice(&crc.to_le_bytes());
    h
}

pub(crate) fn u32_at(bytes: &[u8], at: usize) -> u32 {
    let mut b = [0u8; 4];
    b.copy_from_slice(&bytes[at..at + 4]);
    u32::from_le_bytes(b)
}

pub(crate) fn u64_at(bytes: &[u8], at: usize) -> u64 {
    let mut b = [0u8; 8];
    b.copy_from_slice(&bytes[at..at + 8]);
    u64::from_le_bytes(b)
}

pub(crate) fn segment_files(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .expect("list store directory")
        .filter_map(|e| e.ok())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".jseg"))
        .collect();
    names.sort();
    names
}
