//! The manifest: which segments make up the store, one generation at a time.
//!
//! The manifest is one small file, `MANIFEST`, replaced atomically: the new
//! generation is written to `MANIFEST.tmp`, synced, renamed over `MANIFEST`,
//! and the directory is synced. A crash at any step leaves either the old or
//! the new generation in place, never a mix. Every change to the set of
//! segments (a roll, freeing segments, sealing a torn segment at open) is a
//! new generation.

use std::path::Path;
use std::sync::Arc;

use zerocopy::byteorder::little_endian::{U32, U64};
use zerocopy::{FromBytes, Immutable, IntoBytes, KnownLayout, Unaligned};

use crate::error::{Error, Result};
use crate::io::{FileSystem, OpenMode};
use crate::record::{crc32, MANIFEST_VERSION};

use crate::segment::Segment;

/// File name of the current manifest.
pub(crate) const MANIFEST_FILE: &str = "MANIFEST";
/// File name a new manifest is written under before the rename.
pub(crate) const MANIFEST_TMP_FILE: &str = "MANIFEST.tmp";
/// File name of the generation a roll made and has not yet stored
/// (see the module comment).
pub(crate) const MANIFEST_NEXT_FILE: &str = "MANIFEST.next";
/// First 8 bytes of a manifest.
pub const MANIFEST_MAGIC: [u8; 8] = *b"JSTRMAN\0";
/// `sealed_len` of the active segment.
const ACTIVE: u64 = u64::MAX;
/// Most segments a manifest may list (bounds what a reader allocates).
const MAX_SEGMENTS: u32 = 1 << 20;

/// Fixed part of the manifest file.
#[derive(Clone, Copy, Debug, FromBytes, IntoBytes, KnownLayout, Immutable, Unaligned)]
#[repr(C)]
pub struct ManifestHeader {
    /// [`MANIFEST_MAGIC`].
    pub magic: [u8; 8],
    /// Format version.
    pub version: U32,
    /// Number of segment entries that follow.
    pub segment_count: U32,
    /// The generation number.
    pub generation: U64,
    /// The id the next new segment gets.
    pub next_segment_id: U64,
    /// The highest LSN ever assigned when this generation was written; new
    /// LSNs are above it even if every record carrying it was freed.
    pub lsn_floor: U64,
}

/// One segment entry of the manifest.
#[derive(Clone, Copy, Debug, FromBytes, IntoBytes, KnownLayout, Immutable, Unaligned)]
#[repr(C)]
pub struct ManifestEntry {
    /// Segment id.
    pub segment_id: U64,
    /// Length of valid data of a sealed segment; `u64::MAX` for the active one.
    pub sealed_len: U64,
}

/// A decoded manifest.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Manifest {
    pub generation: u64,
    pub next_segment_id: u32,
    pub lsn_floor: u64,
    /// In replay (LSN) order; the last one is the active segment.
    pub segments: Vec<ListedSegment>,
}

/// One segment a manifest lists.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct ListedSegment {
    /// The segment's id (its file name).
    pub id: u32,
    /// The length of its records when sealed; `None` for the active segment.
    pub sealed_len: Option<u64>,
}

impl ListedSegment {
    /// The active segment `id`.
    pub fn active(id: u32) -> ListedSegment {
        ListedSegment {
            id,
            sealed_len: None,
        }
    }
}

impl Manifest {
    pub fn encode(&self) -> Vec<u8> {
        let header = ManifestHeader {
            magic: MANIFEST_MAGIC,
            version: MANIFEST_VERSION.into(),
            segment_count: (self.segments.len() as u32).into(),
            generation: self.generation.into(),
            next_segment_id: u64::from(self.next_segment_id).into(),
            lsn_floor: self.lsn_floor.into(),
        };
        let mut out = header.as_bytes().to_vec();
        for &ListedSegment {
            id,
            sealed_len: sealed,
        } in &self.segments
        {
            let entry = ManifestEntry {
                segment_id: u64::from(id).into(),
                sealed_len: sealed.unwrap_or(ACTIVE).into(),
            };
            out.extend_from_slice(entry.as_bytes());
        }
        let crc = crc32(&out);
        out.extend_from_slice(&crc.to_le_bytes());
        out
    }

    /// Decodes a manifest file's bytes; `path` is for error messages.
    pub fn decode(bytes: &[u8], path: &Path) -> Result<Manifest> {
        let corrupt = |offset: usize, reason: &str| Error::corruption(path, offset as u64, reason);
        let (header, rest) = ManifestHeader::read_from_prefix(bytes)
            .map_err(|_| corrupt(0, "manifest shorter than its header"))?;
        if header.magic != MANIFEST_MAGIC {
            return Err(corrupt(0, "not a manifest (bad magic)"));
        }
        let count = header.segment_count.get();
        let entry_len = std::mem::size_of::<ManifestEntry>();
        let header_len = std::mem::size_of::<ManifestHeader>();
        let body_len = (count as usize).saturating_mul(entry_len);
        if count > MAX_SEGMENTS || rest.len() != body_len + 4 {
            // Check the version first so that a future format with another
            // layout is reported as such rather than as damage.
            if header.version.get() != MANIFEST_VERSION {
                return Err(Error::UnsupportedVersion {
                    path: path.to_owned(),
                    found: header.version.get(),
                    supported: MANIFEST_VERSION,
                });
            }
            return Err(corrupt(
                header_len,
                "manifest length does not match its count",
            ));
        }
        let crc_at = header_len + body_len;
        let stored = u32::from_le_bytes([
            bytes[crc_at],
            bytes[crc_at + 1],
            bytes[crc_at + 2],
            bytes[crc_at + 3],
        ]);
        if crc32(&bytes[..crc_at]) != stored {
            return Err(corrupt(crc_at, "manifest checksum mismatch"));
        }
        if header.version.get() != MANIFEST_VERSION {
            return Err(Error::UnsupportedVersion {
                path: path.to_owned(),
                found: header.version.get(),
                supported: MANIFEST_VERSION,
            });
        }
        let next_segment_id = u32::try_from(header.next_segment_id.get())
            .map_err(|_| corrupt(24, "next segment id out of range"))?;
        let entries = &bytes[header_len..crc_at];
        let repeat = first_repeat(entries);
        let mut segments = Vec::with_capacity(count as usize);
        for i in 0..count as usize {
            let at = header_len + i * entry_len;
            let (e, _) = ManifestEntry::read_from_prefix(&bytes[at..])
                .map_err(|_| corrupt(at, "truncated manifest entry"))?;
            let id = u32::try_from(e.segment_id.get())
                .map_err(|_| corrupt(at, "segment id out of range"))?;
            if id >= next_segment_id || repeat == Some(i) {
                return Err(corrupt(
                    at,
                    "segment id repeated or not below next_segment_id",
                ));
            }
            let last = i + 1 == count as usize;
            let sealed = match e.sealed_len.get() {
                ACTIVE if last => None,
                ACTIVE => return Err(corrupt(at, "active segment is not the last")),
                _ if last => return Err(corrupt(at, "last segment is not active")),
                len => Some(len),
            };
            segments.push(ListedSegment {
                id,
                sealed_len: sealed,
            });
        }
        if segments.is_empty() {
            return Err(corrupt(header_len, "manifest lists no segment"));
        }
        Ok(Manifest {
            generation: header.generation.get(),
            next_segment_id,
            lsn_floor: header.lsn_floor.get(),
            segments,
        })
    }

    /// Reads and decodes `dir/MANIFEST`; `Ok(None)` if there is none.
    pub fn load(fs: &dyn FileSystem, dir: &Path) -> Result<Option<Manifest>> {
        let path = dir.join(MANIFEST_FILE);
        let file = match fs.open(&path, OpenMode::ReadOnly) {
            Ok(f) => f,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(Error::io("open manifest", path, e)),
        };
        let len = file
            .len()
            .map_err(|e| Error::io("read manifest", &path, e))?;
        if len > (MAX_SEGMENTS as u64 + 4) * 16 {
            return Err(Error::corruption(&path, 0, "manifest is implausibly large"));
        }
        let mut bytes = vec![0u8; len as usize];
        file.read_at(0, &mut bytes)
            .map_err(|e| Error::io("read manifest", &path, e))?;
        Manifest::decode(&bytes, &path).map(Some)
    }

    /// Reads and decodes `dir/MANIFEST.next`; `None` if there is none or it
    /// does not decode (a process crash may interrupt its write).
    pub fn load_next(fs: &dyn FileSystem, dir: &Path) -> Option<Manifest> {
        let path = dir.join(MANIFEST_NEXT_FILE);
        let file = fs.open(&path, OpenMode::ReadOnly).ok()?;
        let len = file.len().ok()?;
        if len > (MAX_SEGMENTS as u64 + 4) * 16 {
            return None;
        }
        let mut bytes = vec![0u8; len as usize];
        file.read_at(0, &mut bytes).ok()?;
        Manifest::decode(&bytes, &path).ok()
    }

    /// Writes this manifest to `MANIFEST.next`, without a sync: it must
    /// survive a process crash, not a power loss (see the module comment).
    pub fn store_next(&self, fs: &dyn FileSystem, dir: &Path) -> Result<()> {
        let path = dir.join(MANIFEST_NEXT_FILE);
        match fs.remove_file(&path) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                return Err(Error::io("remove stale next manifest", path, e));
            }
            _ => {}
        }
        let file = fs
            .open(&path, OpenMode::CreateNew)
            .map_err(|e| Error::io("create next manifest", &path, e))?;
        file.write_at(0, &self.encode())
            .map_err(|e| Error::io("write next manifest", &path, e))
    }

    /// Whether `next` is this manifest with its active segment sealed and
    /// one new active segment after it: the generation a roll makes.
    pub fn rolled_to(&self, next: &Manifest) -> bool {
        let n = self.segments.len();
        let (Some(sealed), Some(new)) = (
            n.checked_sub(1).and_then(|k| next.segments.get(k)),
            next.segments.get(n),
        ) else {
            return false;
        };
        next.segments.len() == n + 1
            && next.segments[..n - 1] == self.segments[..n - 1]
            && sealed.id == self.segments[n - 1].id
            && sealed.sealed_len.is_some()
            && Some(next.generation) == self.generation.checked_add(1)
            && next.lsn_floor >= self.lsn_floor
            && new.id >= self.next_segment_id
            && next.next_segment_id > new.id
    }

    /// Writes this manifest as the current one: tmp file, sync, rename, sync dir.
    pub fn store(&self, fs: &dyn FileSystem, dir: &Path) -> Result<()> {
        let steps = crate::io::ReplaceSteps {
            remove_stale: "remove stale manifest",
            create: "create manifest",
            write: "write manifest",
            sync: "sync manifest",
            rename: "rename manifest",
        };
        let (tmp, path) = (dir.join(MANIFEST_TMP_FILE), dir.join(MANIFEST_FILE));
        crate::io::replace_durably(fs, dir, &tmp, &path, &self.encode(), &steps)
    }
}

/// The index of the first entry whose segment id an earlier entry already
/// has, among `entries` (the manifest's 16-byte entries). Sorts (id, index)
/// pairs: O(n log n) time and 8 bytes per entry, where a search of the
/// earlier entries for each one would be quadratic (2^20 entries are
/// allowed). Ids beyond `u32` are left out: decoding fails at such an entry
/// before any repeat of it could matter.
fn first_repeat(entries: &[u8]) -> Option<usize> {
    let mut keys: Vec<u64> = entries
        .chunks_exact(std::mem::size_of::<ManifestEntry>())
        .enumerate()
        .filter_map(|(i, e)| {
            let id =
                u32::try_from(ManifestEntry::read_from_bytes(e).ok()?.segment_id.get()).ok()?;
            // Entries number at most 2^20, so an index fits in 32 bits.
            Some(u64::from(id) << 32 | i as u64)
        })
        .collect();
    let mut comparisons = 0u64;
    keys.sort_unstable_by(|a, b| {
        comparisons += 1;
        a.cmp(b)
    });
    crate::work::manifest_id_comparisons(comparisons);
    // Within a run of equal ids the indexes ascend; the second one of each
    // run repeats the first, and the earliest of those is the answer.
    keys.windows(2)
        .filter(|w| w[0] >> 32 == w[1] >> 32)
        .map(|w| (w[1] & u64::from(u32::MAX)) as usize)
        .min()
}

/// The segments of one manifest generation, open and mapped.
#[derive(Debug)]
pub(crate) struct Generation {
    pub number: u64,
    /// In manifest order, which is replay (LSN) order; the last one is the
    /// active segment. Ids grow with creation, so a compacted segment that
    /// takes the place of older ones has a larger id than its neighbours.
    pub segments: Vec<Arc<Segment>>,
    /// (id, position in `segments`), sorted by id.
    by_id: Vec<(u32, usize)>,
    /// The manifest's sealed lengths, parallel to `segments`.
    pub sealed: Vec<Option<u64>>,
}

impl Generation {
    pub fn new(number: u64, segments: Vec<Arc<Segment>>) -> Generation {
        let mut by_id: Vec<(u32, usize)> = segments
            .iter()
            .enumerate()
            .map(|(i, s)| (s.id, i))
            .collect();
        by_id.sort_unstable();
        Generation {
            number,
            segments,
            by_id,
            sealed: Vec::new(),
        }
    }

    /// Records the sealed lengths of the manifest this generation came from.
    pub fn with_sealed(mut self, manifest: &Manifest) -> Generation {
        self.sealed = manifest.segments.iter().map(|s| s.sealed_len).collect();
        self
    }

    pub fn segment(&self, id: u32) -> Option<&Arc<Segment>> {
        self.by_id
            .binary_search_by_key(&id, |&(id, _)| id)
            .ok()
            .map(|i| &self.segments[self.by_id[i].1])
    }

    pub fn bytes_on_disk(&self) -> u64 {
        self.segments.iter().map(|s| s.capacity).sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn roundtrip_and_every_flip_is_caught() {
        let m = Manifest {
            generation: 7,
            next_segment_id: 9,
            lsn_floor: 1234,
            segments: vec![
                ListedSegment {
                    id: 3,
                    sealed_len: Some(4096),
                },
                ListedSegment::active(8),
            ],
        };
        let bytes = m.encode();
        let path = Path::new("MANIFEST");
        assert_eq!(Manifest::decode(&bytes, path).unwrap(), m);
        for i in 0..bytes.len() {
            for bit in 0..8 {
                let mut b = bytes.clone();
                b[i] ^= 1 << bit;
                assert!(Manifest::decode(&b, path).is_err(), "byte {i} bit {bit}");
            }
        }
        for cut in 0..bytes.len() {
            assert!(Manifest::decode(&bytes[..cut], path).is_err());
        }
    }
}
