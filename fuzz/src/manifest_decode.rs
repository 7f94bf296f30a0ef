//! Target `manifest_decode`: arbitrary bytes as a manifest, decoded, and
//! as the `MANIFEST` of the template store, which is then opened every way
//! there is.

use std::path::Path;

use journalstore::inspect;
use journalstore::Error;

use crate::common::check::{open_checked, to_model};
use crate::common::template::template;
use crate::common::{crc32, encode_manifest, scratch, write_files, MAX_INPUT};

/// Arbitrary bytes as a manifest.
///
/// Always: `inspect::decode_manifest` of the whole input returns; when it
/// accepts, what it decoded obeys format-spec section 6 (ids ascending below
/// `next_segment_id`, only the last active, at least one segment) and
/// encodes back to exactly the input bytes.
///
/// When the input has at least one byte: the bytes after the first become
/// the `MANIFEST` of the template store (its checksum recomputed when the
/// first byte is odd, so the fuzzer reaches the checks behind it) and the
/// store goes through [`open_checked`]. If that manifest lists exactly the
/// template's segments, a successful open must show the template's state.
pub fn manifest_decode(data: &[u8]) {
    if data.len() > MAX_INPUT {
        return;
    }
    check_manifest_decode(data);
    let Some((&control, rest)) = data.split_first() else {
        return;
    };
    let mut manifest = rest.to_vec();
    if control & 1 != 0 && manifest.len() >= 4 {
        let at = manifest.len() - 4;
        let crc = crc32(&manifest[..at]);
        manifest[at..].copy_from_slice(&crc.to_le_bytes());
    }
    let decoded = check_manifest_decode(&manifest);
    let template = template(usize::from(control & 2 != 0));
    let tmp = scratch();
    let dir = tmp.path();
    let mut files = template.files.clone();
    files.insert("MANIFEST".to_owned(), manifest);
    write_files(dir, &files);
    let ctx = format!("manifest_decode (control {control:#04x})");
    let Some(state) = open_checked(dir, &ctx) else {
        return;
    };
    let same_segments = decoded.is_some_and(|segments| segments == template.segments);
    if same_segments {
        let final_model = template.prefixes.last().expect("template has batches");
        assert_eq!(
            to_model(&state).as_ref(),
            Some(final_model),
            "{ctx}: the template's own segment list shows another state"
        );
    }
}

/// Decodes `bytes`, checks what was decoded, returns its segment list.
fn check_manifest_decode(bytes: &[u8]) -> Option<Vec<(u32, Option<u64>)>> {
    let info = match inspect::decode_manifest(bytes, Path::new("MANIFEST")) {
        Ok(info) => info,
        Err(e) => {
            let _ = e.to_string();
            assert!(
                matches!(
                    e,
                    Error::Corruption { .. } | Error::UnsupportedVersion { .. }
                ),
                "manifest rejected with an unexpected error kind: {e:?}"
            );
            return None;
        }
    };
    let segs = &info.segments;
    assert!(!segs.is_empty(), "accepted a manifest without segments");
    for (i, s) in segs.iter().enumerate() {
        assert!(
            s.id < info.next_segment_id,
            "segment id not below next_segment_id"
        );
        // Manifest order is replay order; since compaction rewrites a run
        // of segments under a new id, ids need not ascend, only be unique.
        assert!(
            segs[..i].iter().all(|p| p.id != s.id),
            "segment id repeated"
        );
        assert_eq!(
            s.sealed_len.is_none(),
            i + 1 == segs.len(),
            "only the last segment may be (and must be) active"
        );
        assert_eq!(
            inspect::segment_id_from_file_name(&s.file_name),
            Some(s.id),
            "file name of segment {}",
            s.id
        );
    }
    let entries: Vec<(u64, u64)> = segs
        .iter()
        .map(|s| (u64::from(s.id), s.sealed_len.unwrap_or(u64::MAX)))
        .collect();
    let again = encode_manifest(
        info.generation,
        u64::from(info.next_segment_id),
        info.lsn_floor,
        &entries,
    );
    assert!(
        again == bytes,
        "an accepted manifest does not encode back to its bytes: {info:?}"
    );
    Some(segs.iter().map(|s| (s.id, s.sealed_len)).collect())
}
