//! Target `index_checkpoint_decode`: arbitrary bytes as an index
//! checkpoint, decoded, and as the checkpoint of the template store, which
//! is then opened every way there is.

use std::path::Path;
use std::sync::OnceLock;

use journalstore::inspect;
use journalstore::io::SimFs;
use journalstore::{Store, SyncMode};

use crate::common::check::{open_checked, to_model};
use crate::common::template::template;
use crate::common::{crc32, dir_image, options, scratch, write_files, MAX_INPUT};

/// The template store (variant 0) with an index checkpoint written at its
/// last record: its files, and the checkpoint's file name.
fn with_checkpoint() -> &'static (std::collections::BTreeMap<String, Vec<u8>>, String) {
    static CELL: OnceLock<(std::collections::BTreeMap<String, Vec<u8>>, String)> = OnceLock::new();
    CELL.get_or_init(|| {
        let tmp = scratch();
        write_files(tmp.path(), &template(0).files);
        let store = Store::open(tmp.path(), options(&SimFs::new(), SyncMode::Always))
            .expect("open the template");
        store
            .write_index_checkpoint()
            .expect("checkpoint the template");
        drop(store);
        let files = dir_image(tmp.path());
        let name = files
            .keys()
            .find(|n| n.ends_with(".jidx"))
            .expect("a checkpoint file")
            .clone();
        (files, name)
    })
}

/// The template's genuine index checkpoint, for seed generation
/// (`examples/seeds.rs`).
pub fn template_checkpoint() -> Vec<u8> {
    let (files, name) = with_checkpoint();
    files[name].clone()
}

/// Arbitrary bytes as an index checkpoint.
///
/// Always: `inspect::decode_index_checkpoint` of the whole input returns;
/// when it accepts, what it decoded has at least one segment, the last
/// one active.
///
/// When the input has at least one byte, the first chooses what the rest
/// becomes in the template store with its own checkpoint:
/// - bit 0 clear: the rest replaces the checkpoint file whole; if bit 1 is
///   set, its header and body checksums are recomputed (format-spec 13), so
///   the fuzzer reaches the checks behind them;
/// - bit 0 set: the rest is a list of (offset, xor) byte pairs applied to
///   the genuine checkpoint, checksums left as they are.
///
/// The store then goes through [`open_checked`]. Whenever the checkpoint
/// the store holds fails to decode, open must give exactly the template's
/// state: a damaged checkpoint is ignored (full replay), never trusted.
pub fn index_checkpoint_decode(data: &[u8]) {
    if data.len() > MAX_INPUT {
        return;
    }
    check_decode(data);
    let Some((&control, rest)) = data.split_first() else {
        return;
    };
    let (files, name) = with_checkpoint();
    let mut checkpoint = files[name].clone();
    if control & 1 == 0 {
        checkpoint = rest.to_vec();
        if control & 2 != 0 {
            fix_checksums(&mut checkpoint);
        }
    } else {
        let len = checkpoint.len().max(1);
        for pair in rest.chunks_exact(3) {
            let at = usize::from(u16::from_le_bytes([pair[0], pair[1]]));
            if let Some(b) = checkpoint.get_mut(at % len) {
                *b ^= pair[2];
            }
        }
    }
    let decodes = check_decode(&checkpoint);
    let tmp = scratch();
    let dir = tmp.path();
    let mut files = files.clone();
    files.insert(name.clone(), checkpoint);
    write_files(dir, &files);
    let ctx = format!("index_checkpoint_decode (control {control:#04x})");
    if decodes && control & 1 == 0 {
        // A checkpoint crafted with valid checksums is trusted like any
        // checksum-valid file: open must not panic or break a budget, but
        // what it shows is what the file says.
        if let Ok(store) = Store::open(dir, options(&SimFs::new(), SyncMode::Always)) {
            let _ = crate::common::check::read_state(&store.snapshot(), &ctx);
        }
        return;
    }
    let Some(state) = open_checked(dir, &ctx) else {
        panic!("{ctx}: the template store with any checkpoint must open");
    };
    if !decodes {
        let final_model = template(0).prefixes.last().expect("template has batches");
        assert_eq!(
            to_model(&state).as_ref(),
            Some(final_model),
            "{ctx}: a checkpoint that does not decode changed what open shows"
        );
    }
}

/// Decodes `bytes`; checks what an accepted checkpoint must satisfy and
/// returns whether it was accepted.
fn check_decode(bytes: &[u8]) -> bool {
    match inspect::decode_index_checkpoint(bytes, Path::new("index")) {
        Ok(info) => {
            assert!(!info.segments.is_empty(), "accepted without segments");
            let (last, sealed) = info.segments.split_last().expect("not empty");
            assert!(last.1.is_none(), "the last segment is sealed: {info:?}");
            assert!(sealed.iter().all(|s| s.1.is_some()), "{info:?}");
            true
        }
        Err(e) => {
            let _ = e.to_string();
            false
        }
    }
}

/// Recomputes the header checksum (bytes 60..64 over 0..60) and the body's
/// (the last 4 bytes, over the body between the header and the 12-byte
/// trailer, whose first 8 bytes are its length).
fn fix_checksums(bytes: &mut [u8]) {
    if bytes.len() < 64 + 12 {
        return;
    }
    let crc = crc32(&bytes[..60]);
    bytes[60..64].copy_from_slice(&crc.to_le_bytes());
    let trailer = bytes.len() - 12;
    let body_len = (trailer - 64) as u64;
    bytes[trailer..trailer + 8].copy_from_slice(&body_len.to_le_bytes());
    let crc = crc32(&bytes[64..trailer]);
    bytes[trailer + 8..].copy_from_slice(&crc.to_le_bytes());
}
