//! A small valid store, built once per process, that the file-level
//! targets start from (`manifest_decode`, `corrupt_open`, and the seeds of
//! `segment_decode`).

use std::collections::BTreeMap;
use std::sync::OnceLock;

use journalstore::inspect;
use journalstore::io::SimFs;
use journalstore::{Store, SyncMode};

use super::{dir_image, options, scratch};
use crate::model::{to_batch, Model, Op};

/// A store built by a fixed script: its files, and the model after each
/// prefix of its batches (`prefixes[k]` = after the first `k` batches).
pub(crate) struct Template {
    pub(crate) files: BTreeMap<String, Vec<u8>>,
    pub(crate) prefixes: Vec<Model>,
    /// `(id, sealed_len)` of the manifest's segments.
    pub(crate) segments: Vec<(u32, Option<u64>)>,
}

/// Deterministic entry bytes: a pattern that differs per `tag`.
pub(crate) fn value(tag: u32, len: usize) -> Vec<u8> {
    (0..len)
        .map(|i| (tag.wrapping_mul(131).wrapping_add(i as u32 * 7) % 251) as u8)
        .collect()
}

/// The template's batches: four journals, entries of 150-260 bytes so the
/// 4608-byte segments roll about every eight batches, and trims, truncates
/// and a delete so the first segments die and are freed.
pub(crate) fn template_batches() -> Vec<Vec<Op>> {
    let (a, b, c, d) = (
        b"a".to_vec(),
        b"bee".to_vec(),
        b"c".to_vec(),
        vec![b'd'; 40],
    );
    let mut batches = vec![vec![
        Op::SetMetadata(a.clone(), b"meta a".to_vec()),
        Op::SetMetadata(b.clone(), b"meta b".to_vec()),
    ]];
    for i in 0..8u32 {
        batches.push(vec![
            Op::Append(a.clone(), Some(u64::from(i)), value(i, 200)),
            Op::Append(b.clone(), None, value(100 + i, 180)),
        ]);
    }
    batches.push(vec![Op::Delete(b.clone()), Op::Trim(a.clone(), 6)]);
    for i in 0..8u32 {
        batches.push(vec![
            Op::Append(c.clone(), None, value(200 + i, 250)),
            Op::Append(a.clone(), None, value(300 + i, 150)),
        ]);
    }
    batches.push(vec![
        Op::Truncate(a.clone(), 12),
        Op::SetMetadata(a.clone(), b"meta a, again".to_vec()),
        Op::SetMetadata(c.clone(), b"meta c".to_vec()),
    ]);
    batches.push(vec![Op::Trim(a.clone(), 9), Op::Trim(c.clone(), 3)]);
    for i in 0..6u32 {
        batches.push(vec![
            Op::Append(d.clone(), None, value(400 + i, 260)),
            Op::Append(a.clone(), None, value(500 + i, 100)),
        ]);
    }
    batches.push(vec![
        Op::Trim(a.clone(), 14),
        Op::Delete(c.clone()),
        Op::SetMetadata(d.clone(), b"meta d".to_vec()),
    ]);
    batches.push(vec![Op::Append(b.clone(), None, value(600, 64))]);
    batches
}

pub(crate) fn build_template(sync: SyncMode) -> Template {
    let tmp = scratch();
    let dir = tmp.path();
    let sim = SimFs::new();
    let store = Store::open(dir, options(&sim, sync)).expect("create the template store");
    let mut model = Model::default();
    let mut prefixes = vec![model.clone()];
    for ops in template_batches() {
        store
            .write(&to_batch(&ops))
            .expect("template batches are valid");
        model.apply(&ops).expect("template batches are valid");
        prefixes.push(model.clone());
    }
    model.assert_matches(&store.snapshot(), "template");
    store.close().expect("close the template store");
    let manifest = inspect::read_manifest(&inspect::manifest_path(dir)).expect("template manifest");
    let segments: Vec<(u32, Option<u64>)> = manifest
        .segments
        .iter()
        .map(|s| (s.id, s.sealed_len))
        .collect();
    // The script is meant to leave several segments, some already freed.
    assert!(
        segments.len() >= 2 && segments[0].0 > 1,
        "template store has segments {segments:?}"
    );
    Template {
        files: dir_image(dir),
        prefixes,
        segments,
    }
}

/// Template 0 is written with `SyncMode::Always` (every record's
/// `synced_through` covers the records before it); template 1 with
/// `SyncMode::Never` and a clean close (the active segment's records claim
/// nothing synced, so damage in the middle reads as a torn tail).
pub(crate) fn template(variant: usize) -> &'static Template {
    static TEMPLATES: [OnceLock<Template>; 2] = [OnceLock::new(), OnceLock::new()];
    let sync = if variant == 0 {
        SyncMode::Always
    } else {
        SyncMode::Never
    };
    TEMPLATES[variant].get_or_init(|| build_template(sync))
}

/// The template's files, for seed generation (`examples/seeds.rs`).
pub fn template_files(variant: usize) -> BTreeMap<String, Vec<u8>> {
    template(variant).files.clone()
}
