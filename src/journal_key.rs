//! `JournalKey`: a journal id as the index holds it.
//!
//! An id of up to [`INLINE_MAX`] bytes is stored in the key itself, so the
//! index's tree nodes, which hold their keys in arrays, compare a probe
//! against bytes in the node instead of chasing a pointer per comparison
//! (a cache miss each, on a lookup in a large index). Longer ids are shared
//! (`Arc<[u8]>`), so cloning a key never copies more than the key itself.
//!
//! Invariant: every comparison, equality and hash is that of the id's bytes
//! (`[u8]`, lexicographic), whichever form holds them, so a map keyed by
//! `JournalKey` is searched with a plain `&[u8]` (`Borrow<[u8]>`), or in the
//! index with a [`Probe`], and no key is built for a lookup. Comparisons
//! take eight bytes at a time (`compare_ids`): ids are short, and a call to
//! `memcmp` per comparison cost more than the comparison.

use std::borrow::Borrow;
use std::cmp::Ordering;
use std::fmt;
use std::hash::{Hash, Hasher};
use std::ops::Deref;
use std::sync::Arc;

use equivalent::{Comparable, Equivalent};

/// The longest id held in place: with the length byte and the form's tag,
/// a key is 24 bytes, the size of the shared form (a fat pointer) plus its
/// tag.
pub(crate) const INLINE_MAX: usize = 22;

/// A journal id, cheap to clone and to compare (module doc).
#[derive(Clone)]
pub(crate) struct JournalKey(Repr);

#[derive(Clone)]
enum Repr {
    /// `bytes[..len]` is the id; `len <= INLINE_MAX`.
    Inline {
        len: u8,
        bytes: [u8; INLINE_MAX],
    },
    Shared(Arc<[u8]>),
}

const _: () = assert!(std::mem::size_of::<JournalKey>() == 24);

impl JournalKey {
    pub fn as_bytes(&self) -> &[u8] {
        match &self.0 {
            Repr::Inline { len, bytes } => &bytes[..*len as usize],
            Repr::Shared(shared) => shared,
        }
    }
}

impl From<&[u8]> for JournalKey {
    fn from(id: &[u8]) -> Self {
        if id.len() <= INLINE_MAX {
            let mut bytes = [0; INLINE_MAX];
            bytes[..id.len()].copy_from_slice(id);
            JournalKey(Repr::Inline {
                len: id.len() as u8,
                bytes,
            })
        } else {
            JournalKey(Repr::Shared(Arc::from(id)))
        }
    }
}

impl Deref for JournalKey {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        self.as_bytes()
    }
}

impl AsRef<[u8]> for JournalKey {
    fn as_ref(&self) -> &[u8] {
        self.as_bytes()
    }
}

impl Borrow<[u8]> for JournalKey {
    fn borrow(&self) -> &[u8] {
        self.as_bytes()
    }
}

impl PartialEq for JournalKey {
    fn eq(&self, other: &Self) -> bool {
        self.as_bytes() == other.as_bytes()
    }
}

impl Eq for JournalKey {}

impl PartialOrd for JournalKey {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for JournalKey {
    fn cmp(&self, other: &Self) -> Ordering {
        compare_ids(self.as_bytes(), other.as_bytes())
    }
}

/// An id to search the index for, compared as [`JournalKey`] compares.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Probe<'a>(pub &'a [u8]);

impl Equivalent<JournalKey> for Probe<'_> {
    fn equivalent(&self, key: &JournalKey) -> bool {
        self.0 == key.as_bytes()
    }
}

impl Comparable<JournalKey> for Probe<'_> {
    fn compare(&self, key: &JournalKey) -> Ordering {
        compare_ids(self.0, key.as_bytes())
    }
}

/// `a.cmp(b)` for byte strings (lexicographic, a prefix first), eight
/// bytes at a time: big-endian words order as their bytes do.
pub(crate) fn compare_ids(mut a: &[u8], mut b: &[u8]) -> Ordering {
    while let (Some((wa, ra)), Some((wb, rb))) =
        (a.split_first_chunk::<8>(), b.split_first_chunk::<8>())
    {
        let (x, y) = (u64::from_be_bytes(*wa), u64::from_be_bytes(*wb));
        if x != y {
            return x.cmp(&y);
        }
        (a, b) = (ra, rb);
    }
    for (x, y) in a.iter().zip(b) {
        if x != y {
            return x.cmp(y);
        }
    }
    a.len().cmp(&b.len())
}

impl Hash for JournalKey {
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.as_bytes().hash(state)
    }
}

impl fmt::Debug for JournalKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self.as_bytes(), f)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::hash_map::DefaultHasher;
    use std::collections::{BTreeMap, HashMap};

    fn hash_of<T: Hash + ?Sized>(value: &T) -> u64 {
        let mut hasher = DefaultHasher::new();
        value.hash(&mut hasher);
        hasher.finish()
    }

    /// Ids on both sides of the inline limit: each key gives back its
    /// bytes, and orders, compares and hashes as those bytes do, so maps
    /// keyed by it are searched with a plain slice.
    #[test]
    fn keys_of_either_form_behave_as_their_bytes() {
        let mut ids: Vec<Vec<u8>> = [0, 1, 7, 8, 9, 16, INLINE_MAX, INLINE_MAX + 1, 255]
            .iter()
            .flat_map(|&len| [vec![0xab; len], vec![0x01; len], vec![0xff; len]])
            .chain([b"b".to_vec(), b"ab".to_vec(), vec![0xab; INLINE_MAX + 1]])
            .collect();
        // Ids that differ only in their last byte, or in one byte inside
        // or just past the first word.
        for at in [0, 6, 7, 8, 9, 15, 16] {
            let mut id = vec![0x55; 17];
            id[at] = 0x54;
            ids.push(id.clone());
            id[at] = 0x56;
            ids.push(id);
        }
        let keys: Vec<JournalKey> = ids.iter().map(|id| JournalKey::from(&id[..])).collect();
        for (a, ka) in ids.iter().zip(&keys) {
            assert_eq!(ka.as_bytes(), &a[..]);
            assert_eq!(hash_of(ka), hash_of(&a[..]));
            for (b, kb) in ids.iter().zip(&keys) {
                assert_eq!(ka.cmp(kb), a.cmp(b), "{a:?} vs {b:?}");
                assert_eq!(Probe(a).compare(kb), a.cmp(b), "{a:?} vs {b:?}");
                assert_eq!(ka == kb, a == b);
                assert_eq!(Probe(a).equivalent(kb), a == b);
            }
        }
        let tree: BTreeMap<JournalKey, usize> = keys.iter().cloned().zip(0..).collect();
        let hashed: HashMap<JournalKey, usize> = keys.iter().cloned().zip(0..).collect();
        for id in &ids {
            assert_eq!(tree.get(&id[..]).map(|&i| &ids[i]), Some(id));
            assert_eq!(hashed.get(&id[..]).map(|&i| &ids[i]), Some(id));
        }
        assert!(!tree.contains_key(&[0xcd; 3][..]));
    }
}
