//! The in-memory index: journal id -> bounds, metadata and entry locations.
//!
//! The index is a persistent (structurally shared) map from `imbl`: cloning it
//! is O(1), so a snapshot keeps the version it was taken on while the writer
//! goes on changing its own copy; only the nodes the writer touches after a
//! clone are copied. An entry costs one 8-byte [`Loc`] (`locs.rs`).
//!
//! The same [`Index::apply`] is used by the write path and by recovery. Every
//! operation on disk carries the journal's bounds *after* it, so applying an
//! operation forces the journal to those bounds. On the write path the bounds
//! always match what is in memory. In recovery, records that were dead and
//! whose segments were freed are missing; their places are held by
//! [`Loc::MISSING`] until later operations remove them, and a placeholder
//! that is still inside a journal at the end of recovery is corruption.
//! A run of placeholders is stored as one item (`locs.rs`): one operation's
//! bounds can describe a gap of millions of entries that a freed segment
//! held, and recovery's memory must follow the bytes it reads.
//!
//! Liveness: an entry, a metadata value, and the journal's latest operation
//! when that is a trim, truncate or clear_metadata (its *anchor*, which
//! recovery needs to restore the bounds when no entry or metadata carries
//! them) are live. Every time an operation makes a live item
//! dead, the tracker hears who killed what, so segments can be freed safely
//! (see `live.rs`).

use std::collections::HashMap;
use std::sync::Arc;

use imbl::OrdMap;

pub(crate) use crate::locs::Loc;
use crate::locs::Locs;
use crate::record::{OpKind, OpRef};

pub(crate) use crate::journal_key::JournalKey;
use crate::journal_key::Probe;

/// One journal's state in one index version.
#[derive(Clone, Debug)]
pub(crate) struct JournalState {
    /// Index of `entries[0]`.
    pub first: u64,
    /// Entry locations for `first .. first + entries.len()`.
    pub entries: Locs,
    /// The latest `set_metadata`, unless a `clear_metadata` came after it.
    pub metadata: Option<Loc>,
    /// The latest operation, when it is a trim, truncate or clear_metadata.
    pub anchor: Option<Loc>,
    /// Sum of the lengths of the entries held (stored ones: a placeholder,
    /// which only recovery has and must remove, counts nothing).
    pub entry_bytes: u64,
    /// Set when an entry whose length could not be read (its segment was
    /// freed: replay from an index checkpoint only) was dropped:
    /// `entry_bytes` is then too large until recovery counts it again
    /// from the entries left (`recount_entry_bytes`).
    pub entry_bytes_unknown: bool,
}

impl JournalState {
    pub fn end(&self) -> u64 {
        self.first + self.entries.len() as u64
    }
}

/// Hears what becomes live and what dies, for space accounting.
pub(crate) trait Liveness {
    /// `loc` (an op of `len` bytes) became live.
    fn live(&mut self, loc: Loc, len: u64);
    /// The op at `victim` died because of the op at `killer`; returns its
    /// encoded length (operation header, id and value).
    fn dead(&mut self, killer: Loc, victim: Loc) -> u64;
    /// An op of journal `id` lies in `segment` (every op, live or not).
    fn seen(&mut self, _segment: u32, _id: &[u8]) {}
}

/// The whole index: one version of every journal.
///
/// Each journal's state sits behind its own `Arc`: the writer changes a
/// journal after every published version, which copies the map's nodes on
/// the path to it, and a node copy then costs one reference count per
/// journal in the node instead of a clone of each journal's state (whose
/// entry vector holds several shared pointers of its own).
#[derive(Clone, Debug, Default)]
pub(crate) struct Index {
    journals: OrdMap<JournalKey, Arc<JournalState>>,
}

impl Index {
    pub fn get(&self, id: &[u8]) -> Option<&JournalState> {
        self.journals.get(&Probe(id)).map(|s| &**s)
    }

    /// The journal's state, copied first if an older version shares it.
    pub fn get_mut(&mut self, id: &[u8]) -> Option<&mut JournalState> {
        self.journals.get_mut(&Probe(id)).map(Arc::make_mut)
    }

    pub fn get_key_value(&self, id: &[u8]) -> Option<(&JournalKey, &JournalState)> {
        self.journals
            .get_key_value(&Probe(id))
            .map(|(k, s)| (k, &**s))
    }

    pub fn len(&self) -> usize {
        self.journals.len()
    }

    /// Sets the state of journal `id` (an index checkpoint being loaded).
    pub fn insert(&mut self, id: JournalKey, state: JournalState) {
        self.journals.insert(id, Arc::new(state));
    }

    pub fn iter(&self) -> impl Iterator<Item = (&JournalKey, &JournalState)> {
        self.journals.iter().map(|(k, s)| (k, &**s))
    }

    /// The journal ids at or after `start`, ascending bytewise.
    pub fn ids_from<'a>(&'a self, start: &[u8]) -> impl Iterator<Item = &'a JournalKey> + 'a {
        use std::ops::Bound;
        self.journals
            .range((Bound::Included(Probe(start)), Bound::Unbounded))
            .map(|(k, _)| k)
    }

    /// Applies one operation found at `loc` to the index. Fails only in
    /// recovery, on bounds no writer could have produced.
    pub fn apply(
        &mut self,
        op: &OpRef<'_>,
        loc: Loc,
        tracker: &mut dyn Liveness,
    ) -> Result<(), &'static str> {
        tracker.seen(loc.segment, op.id);
        if op.kind == OpKind::Delete {
            if let Some(state) = self.journals.remove(&Probe(op.id)) {
                kill_all(&state, loc, tracker);
            }
            return Ok(());
        }
        if self.journals.get(&Probe(op.id)).is_none() {
            let state = JournalState {
                first: op.first,
                entries: Locs::default(),
                metadata: None,
                anchor: None,
                entry_bytes: 0,
                entry_bytes_unknown: false,
            };
            self.journals
                .insert(JournalKey::from(op.id), Arc::new(state));
        }
        let Some(state) = self.get_mut(op.id) else {
            return Ok(());
        };
        if let Some(anchor) = state.anchor.take() {
            tracker.dead(loc, anchor);
        }
        let end = match op.kind {
            OpKind::Append => op.end - 1,
            _ => op.end,
        };
        let framing = (op.len - op.value.len()) as u64;
        force_bounds(state, op.first, end, framing, loc, tracker)?;
        tracker.live(loc, op.len as u64);
        match op.kind {
            OpKind::Append => {
                state.entries.push_back(loc);
                state.entry_bytes += op.value.len() as u64;
            }
            OpKind::SetMetadata => {
                if let Some(old) = state.metadata.replace(loc) {
                    tracker.dead(loc, old);
                }
            }
            OpKind::ClearMetadata => {
                if let Some(old) = state.metadata.take() {
                    tracker.dead(loc, old);
                }
                state.anchor = Some(loc);
            }
            OpKind::TrimPrefix | OpKind::Truncate => state.anchor = Some(loc),
            OpKind::Delete => {}
        }
        Ok(())
    }

    /// Counts `entry_bytes` again, from the lengths `size_of` reads, for
    /// the journals that dropped an entry of unknown length.
    pub fn recount_entry_bytes(&mut self, size_of: &dyn Fn(Loc) -> u64) {
        let ids: Vec<JournalKey> = self
            .journals
            .iter()
            .filter(|(_, s)| s.entry_bytes_unknown)
            .map(|(k, _)| k.clone())
            .collect();
        for id in ids {
            let framing = crate::record::op_len(id.len(), 0) as u64;
            if let Some(state) = self.get_mut(&id) {
                state.entry_bytes = state
                    .entries
                    .stored()
                    .filter(|l| !l.is_missing())
                    .map(|l| size_of(*l).saturating_sub(framing))
                    .sum();
                state.entry_bytes_unknown = false;
            }
        }
    }

    /// Recovery's final check: every journal in `latest` (those replay
    /// touched) must have exactly the bounds its latest operation recorded
    /// and no placeholder left. Returns the first such journal (in id
    /// order) that does not, and the first index missing. Placeholders only
    /// come from replayed operations, so a journal replay did not touch
    /// has none.
    pub fn find_missing(
        &self,
        latest: &HashMap<JournalKey, (u64, u64)>,
    ) -> Option<(JournalKey, u64)> {
        latest
            .iter()
            .filter_map(|(id, &(first, end))| {
                let state = self.get(id)?;
                if state.first != first || state.end() != end {
                    return Some((id.clone(), first));
                }
                let pos = state.entries.first_placeholder()?;
                Some((id.clone(), state.first + pos))
            })
            .min_by(|a, b| a.0.cmp(&b.0))
    }
}

/// Most placeholders one operation may add in recovery. A legitimate hole is
/// as long as a run of entries that were appended, died and were freed; a
/// larger one means the bounds on disk are damaged.
pub(crate) const MAX_HOLE: u64 = 1 << 24;

/// Makes `state` cover `first .. end`, killing entries outside.
///
/// On the write path the bounds always match and this only removes what a
/// trim or truncate drops. In recovery (see the module comment) a range the
/// index lacks at the front is left out rather than filled: such entries are
/// never part of the final state, and recovery checks the final bounds
/// against each journal's latest operation. A range lacking at the back is
/// filled with placeholders (one run item, see
/// [`Gaps`](crate::locs::Gaps)), which later operations must remove. Each
/// location removed costs one step and each run one step, so replay's work
/// and memory grow with the operations it reads, whatever bounds they
/// carry. `framing` is the encoded length of one of the journal's
/// operations less its value (all its entries share it): what an entry's
/// encoded length exceeds its value's by.
fn force_bounds(
    state: &mut JournalState,
    first: u64,
    end: u64,
    framing: u64,
    killer: Loc,
    tracker: &mut dyn Liveness,
) -> Result<(), &'static str> {
    let mut dropped = 0u64;
    let mut unknown = false;
    let mut kill_entry = |victim: Loc| {
        if !victim.is_missing() {
            match tracker.dead(killer, victim) {
                0 => unknown = true,
                len => dropped += len.saturating_sub(framing),
            }
        }
    };
    let above = state.end().saturating_sub(end.max(state.first));
    state.entries.drop_back(above, &mut kill_entry);
    if state.first < first {
        let below = (first - state.first).min(state.entries.len() as u64);
        state.entries.drop_front(below, &mut kill_entry);
        state.first += below;
    }
    state.entry_bytes = state.entry_bytes.saturating_sub(dropped);
    state.entry_bytes_unknown |= unknown;
    if state.entries.is_empty() {
        state.first = end;
    }
    let hole = end.saturating_sub(state.end());
    if hole > MAX_HOLE {
        return Err("journal bounds leave an implausibly large gap");
    }
    state.entries.push_missing(hole);
    Ok(())
}

fn kill(killer: Loc, victim: Loc, tracker: &mut dyn Liveness) {
    if !victim.is_missing() {
        tracker.dead(killer, victim);
    }
}

fn kill_all(state: &JournalState, killer: Loc, tracker: &mut dyn Liveness) {
    for victim in state.entries.stored() {
        kill(killer, *victim, tracker);
    }
    for victim in state.metadata.iter().chain(state.anchor.iter()) {
        tracker.dead(killer, *victim);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::record::{decode_op, encode_op, PlannedOp};

    #[derive(Default)]
    struct Count {
        live: i64,
    }
    impl Liveness for Count {
        fn live(&mut self, _: Loc, _: u64) {
            self.live += 1;
        }
        fn dead(&mut self, _: Loc, _: Loc) -> u64 {
            self.live -= 1;
            0
        }
    }

    fn apply(index: &mut Index, t: &mut Count, kind: OpKind, first: u64, end: u64, at: u32) {
        let mut buf = Vec::new();
        let value: &[u8] = if matches!(kind, OpKind::Append | OpKind::SetMetadata) {
            b"v"
        } else {
            b""
        };
        let planned = PlannedOp {
            kind,
            id: b"j",
            value,
            value_crc: 0,
            first,
            end,
        };
        encode_op(&mut buf, &planned);
        let op = decode_op(&buf, 0).unwrap();
        let loc = Loc {
            segment: 1,
            offset: at,
        };
        index.apply(&op, loc, t).unwrap();
    }

    #[test]
    fn trim_truncate_and_delete_kill_exactly_what_they_drop() {
        let mut index = Index::default();
        let mut t = Count::default();
        for i in 0..5 {
            apply(&mut index, &mut t, OpKind::Append, 0, i + 1, i as u32);
        }
        assert_eq!(t.live, 5);
        apply(&mut index, &mut t, OpKind::TrimPrefix, 2, 5, 10);
        // Entries 0 and 1 die; the trim becomes the anchor.
        assert_eq!(t.live, 3 + 1);
        apply(&mut index, &mut t, OpKind::Truncate, 2, 3, 11);
        // Entries 3 and 4 die; the old anchor dies; the truncate is the anchor.
        assert_eq!(t.live, 1 + 1);
        let j = index.get(b"j").unwrap();
        assert_eq!((j.first, j.end()), (2, 3));
        apply(&mut index, &mut t, OpKind::Delete, 0, 0, 12);
        assert_eq!(t.live, 0);
        assert!(index.get(b"j").is_none());
    }

    #[test]
    fn recovery_placeholders_are_removed_by_later_bounds() {
        let mut index = Index::default();
        let mut t = Count::default();
        // Entries 0..2 and 3 of the journal were written; 2 was freed (it died
        // in a truncate to 2 that comes later). Replay sees 0, 1, then 3.
        apply(&mut index, &mut t, OpKind::Append, 0, 1, 0);
        apply(&mut index, &mut t, OpKind::Append, 0, 2, 1);
        apply(&mut index, &mut t, OpKind::Append, 0, 4, 3);
        let mut latest = HashMap::new();
        latest.insert(JournalKey::from(&b"j"[..]), (0, 4));
        assert_eq!(index.find_missing(&latest).map(|(_, i)| i), Some(2));
        apply(&mut index, &mut t, OpKind::Truncate, 0, 2, 4);
        latest.insert(JournalKey::from(&b"j"[..]), (0, 2));
        assert!(index.find_missing(&latest).is_none());
        let j = index.get(b"j").unwrap();
        assert_eq!((j.first, j.end()), (0, 2));
        // A journal whose earliest entries were freed starts where the
        // surviving records start; the trim that freed them sets the bounds.
        let mut index = Index::default();
        apply(&mut index, &mut t, OpKind::Append, 0, 8, 10);
        latest.insert(JournalKey::from(&b"j"[..]), (0, 8));
        assert_eq!(index.find_missing(&latest).map(|(_, i)| i), Some(0));
        apply(&mut index, &mut t, OpKind::TrimPrefix, 7, 8, 11);
        latest.insert(JournalKey::from(&b"j"[..]), (7, 8));
        assert!(index.find_missing(&latest).is_none());
    }

    /// One operation's bounds may describe a gap of millions of entries
    /// that freed segments held: it costs one item, later bounds remove it
    /// in one step, and a delete or trim across it kills only locations.
    #[test]
    fn a_gap_of_millions_of_entries_is_one_item() {
        let mut latest = HashMap::new();
        let key = JournalKey::from(&b"j"[..]);
        crate::work::take();
        let mut index = Index::default();
        let mut t = Count::default();
        apply(&mut index, &mut t, OpKind::Append, 0, 1, 0);
        apply(&mut index, &mut t, OpKind::SetMetadata, 0, 10_000_001, 1);
        latest.insert(key.clone(), (0, 10_000_001));
        assert_eq!(index.find_missing(&latest).map(|(_, i)| i), Some(1));
        assert_eq!(index.get(b"j").unwrap().end(), 10_000_001);
        apply(&mut index, &mut t, OpKind::Truncate, 0, 1, 2);
        latest.insert(key.clone(), (0, 1));
        assert!(index.find_missing(&latest).is_none());
        assert!(matches!(index.get(b"j").unwrap().entries, Locs::Small(_)));
        assert_eq!(t.live, 3, "entry, metadata, anchor");

        // Across the gap: a trim to an entry after it, then a delete.
        apply(&mut index, &mut t, OpKind::Append, 0, 1 << 24, 3);
        let j = index.get(b"j").unwrap();
        assert_eq!((j.first, j.end()), (0, 1 << 24));
        assert_eq!(
            j.entries.stored().count(),
            3,
            "entry 0, one run, the append"
        );
        apply(
            &mut index,
            &mut t,
            OpKind::TrimPrefix,
            (1 << 24) - 1,
            1 << 24,
            4,
        );
        latest.insert(key.clone(), ((1 << 24) - 1, 1 << 24));
        assert!(index.find_missing(&latest).is_none());
        apply(
            &mut index,
            &mut t,
            OpKind::Append,
            (1 << 24) - 1,
            2 << 24,
            5,
        );
        apply(&mut index, &mut t, OpKind::Delete, 0, 0, 6);
        assert!(index.get(b"j").is_none());
        assert_eq!(t.live, 0);
        assert_eq!(crate::work::take().placeholder_items, 3);
    }
}
