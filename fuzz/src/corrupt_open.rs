//! Target `corrupt_open`: byte flips, truncations, zeroed ranges,
//! deletions and copies in the files of the template store, which is then
//! opened every way there is.

use std::collections::BTreeMap;

use arbitrary::Unstructured;

use crate::common::check::{open_checked, to_model};
use crate::common::template::template;
use crate::common::{scratch, write_files, MAX_INPUT};

/// One change to a store's files.
#[derive(Debug)]
enum Damage {
    /// XOR one byte with a non-zero mask.
    Flip { file: usize, at: u64, mask: u8 },
    /// Cut the file to a length.
    Truncate { file: usize, len: u64 },
    /// Zero a range.
    Zero { file: usize, at: u64, len: u16 },
    /// Delete the file.
    Delete { file: usize },
    /// Copy a range of one file over a range of another (or the same), e.g.
    /// an old record where the data ends.
    Copy {
        from: usize,
        at: u64,
        len: u16,
        to: usize,
        dest: u64,
    },
    /// Copy a whole file to an unused segment name (an orphan).
    Orphan { file: usize, id: u8 },
}

/// An offset in a file of `len` bytes whose data ends at `used`: usually in
/// or just after the data, sometimes anywhere.
fn pick_offset(u: &mut Unstructured, len: usize, used: usize) -> arbitrary::Result<u64> {
    if len == 0 {
        return Ok(0);
    }
    let range = if u.ratio(3, 4)? {
        (used + 64).min(len)
    } else {
        len
    };
    u.int_in_range(0..=range as u64 - 1)
}

fn used_len(bytes: &[u8]) -> usize {
    bytes.iter().rposition(|&b| b != 0).map_or(0, |p| p + 1)
}

fn gen_damage(
    u: &mut Unstructured,
    files: &BTreeMap<String, Vec<u8>>,
) -> arbitrary::Result<Damage> {
    let names: Vec<&Vec<u8>> = files.values().collect();
    let file = u.choose_index(names.len())?;
    let bytes = names[file];
    let (len, used) = (bytes.len(), used_len(bytes));
    Ok(match u.int_in_range(0..=9u8)? {
        0..=3 => Damage::Flip {
            file,
            at: pick_offset(u, len, used)?,
            mask: u.int_in_range(1..=255)?,
        },
        4 => Damage::Truncate {
            file,
            len: u.int_in_range(0..=len as u64)?,
        },
        5 => Damage::Zero {
            file,
            at: pick_offset(u, len, used)?,
            len: u.int_in_range(1..=512)?,
        },
        6 => Damage::Delete { file },
        7 | 8 => {
            let to = u.choose_index(names.len())?;
            let dest_bytes = names[to];
            Damage::Copy {
                from: file,
                at: pick_offset(u, len, used)?,
                len: u.int_in_range(1..=1024)?,
                to,
                dest: pick_offset(u, dest_bytes.len(), used_len(dest_bytes))?,
            }
        }
        _ => Damage::Orphan {
            file,
            id: u.int_in_range(1..=16)?,
        },
    })
}

fn apply_damage(files: &mut BTreeMap<String, Vec<u8>>, damage: &Damage) {
    let name = |files: &BTreeMap<String, Vec<u8>>, i: usize| files.keys().nth(i).cloned();
    match *damage {
        Damage::Flip { file, at, mask } => {
            let Some(n) = name(files, file) else { return };
            if let Some(b) = files.get_mut(&n).and_then(|f| f.get_mut(at as usize)) {
                *b ^= mask;
            }
        }
        Damage::Truncate { file, len } => {
            let Some(n) = name(files, file) else { return };
            if let Some(f) = files.get_mut(&n) {
                f.truncate(len as usize);
            }
        }
        Damage::Zero { file, at, len } => {
            let Some(n) = name(files, file) else { return };
            if let Some(f) = files.get_mut(&n) {
                let start = (at as usize).min(f.len());
                let end = (start + usize::from(len)).min(f.len());
                f[start..end].fill(0);
            }
        }
        Damage::Delete { file } => {
            let Some(n) = name(files, file) else { return };
            files.remove(&n);
        }
        Damage::Copy {
            from,
            at,
            len,
            to,
            dest,
        } => {
            let (Some(src), Some(dst)) = (name(files, from), name(files, to)) else {
                return;
            };
            let chunk: Vec<u8> = {
                let f = &files[&src];
                let start = (at as usize).min(f.len());
                f[start..(start + usize::from(len)).min(f.len())].to_vec()
            };
            if let Some(f) = files.get_mut(&dst) {
                let start = (dest as usize).min(f.len());
                let end = (start + chunk.len()).min(f.len());
                f[start..end].copy_from_slice(&chunk[..end - start]);
            }
        }
        Damage::Orphan { file, id } => {
            let Some(n) = name(files, file) else { return };
            let orphan = format!("seg-{:08x}.jseg", 100 + u32::from(id));
            let bytes = files[&n].clone();
            files.insert(orphan, bytes);
        }
    }
}

/// A valid store (one of the two [`template`]s: four journals over several
/// 4608-byte segments, the first ones already freed) with 1..=4 arbitrary
/// changes to its files (byte flips, truncations, zeroed ranges, deletions,
/// copies of bytes from elsewhere, orphan copies), then opened.
///
/// Every damage is either detected (the open fails with a typed error and,
/// if it is `Corruption`, changes nothing) or harmless: if the open
/// succeeds, every value reads back without error and the state is exactly
/// the model after some prefix of the template's batches (damage that looks
/// like a torn tail may cut the last batches; nothing else is acceptable).
/// Opening is checked as in [`open_checked`] (read-only open agrees,
/// reopening is stable, new writes work).
pub fn corrupt_open(data: &[u8]) {
    if data.len() > MAX_INPUT {
        return;
    }
    let mut u = Unstructured::new(data);
    let variant = usize::from(u.arbitrary::<bool>().unwrap_or(false));
    let template = template(variant);
    let mut files = template.files.clone();
    let count = u.int_in_range(1..=4u8).unwrap_or(1);
    let mut damages = Vec::new();
    for _ in 0..count {
        if files.is_empty() {
            break;
        }
        let Ok(damage) = gen_damage(&mut u, &files) else {
            break;
        };
        apply_damage(&mut files, &damage);
        damages.push(damage);
    }
    let tmp = scratch();
    let dir = tmp.path();
    write_files(dir, &files);
    let ctx = format!("corrupt_open (template {variant}, {damages:?})");
    let Some(state) = open_checked(dir, &ctx) else {
        return;
    };
    let model = to_model(&state)
        .unwrap_or_else(|| panic!("{ctx}: opened, but values do not read back: {state:?}"));
    assert!(
        template.prefixes.contains(&model),
        "{ctx}: opened with a state that no prefix of the batches produces: {model:?}"
    );
}
