//! Where a journal's entries are: one 8-byte [`Loc`] per entry, in a
//! representation sized to the journal.
//!
//! Small journals (up to [`SMALL_MAX`] entries) keep an exact-size vector,
//! larger ones a persistent `imbl` vector that index versions share. A
//! large journal loaded from an index checkpoint keeps the vector of
//! locations the checkpoint decoded to, shared ([`Flat`]), until a location
//! in it is changed: open then costs no push per entry. During
//! recovery, a run of placeholders ([`Loc::MISSING`]: entries whose records
//! were in freed segments) is stored as one item ([`Gaps`]), so one
//! operation's bounds describing a gap of millions of entries costs one
//! item and later bounds remove it in one step: recovery's memory follows
//! the operations it reads. A journal without runs is never in that form.

use std::sync::Arc;

use imbl::Vector;

/// Where an operation lives: segment id and the byte offset of its op header.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub(crate) struct Loc {
    pub segment: u32,
    pub offset: u32,
}

impl Loc {
    /// One placeholder: an entry no replayed record holds, because the
    /// record's segment was freed or compacted away (recovery only).
    pub const MISSING: Loc = Loc::missing_run(1);

    /// A run of `n` (at least 1) consecutive placeholders, stored as one
    /// item. No segment has the id `u32::MAX` (ids stay below the
    /// manifest's `next_segment_id`, a `u32`), so no location is mistaken
    /// for one.
    const fn missing_run(n: u32) -> Loc {
        Loc {
            segment: u32::MAX,
            offset: n,
        }
    }

    /// Whether this is a placeholder, or an item standing for a run of them.
    pub fn is_missing(self) -> bool {
        self.segment == u32::MAX
    }

    /// The placeholders a run item stands for; `None` for a location.
    fn run_len(self) -> Option<u32> {
        self.is_missing().then_some(self.offset)
    }

    /// Positions this item covers: 1 for a location, `n` for a run.
    fn weight(self) -> u64 {
        self.run_len().map_or(1, u64::from)
    }
}

/// What positional reads of a run yield, one per placeholder.
static MISSING: Loc = Loc::MISSING;

/// A journal's entry locations. A journal of up to [`SMALL_MAX`] entries
/// keeps them in a vector of just their size; a larger one in a persistent
/// vector (chunks of 64, shared between versions). The persistent vector's
/// smallest allocation is a whole 64-entry chunk (512 bytes), which for the
/// typical short journal cost 3-4 times its entries; copying a small vector
/// when a published version shares it costs no more than that chunk copy.
///
/// Recovery alone may leave placeholders among the entries ([`Gaps`]); a
/// store that opened has none.
#[derive(Clone, Debug)]
pub(crate) enum Locs {
    Small(Vec<Loc>),
    Large(Vector<Loc>),
    Flat(Box<Flat>),
    Gaps(Box<Gaps>),
}

/// A large journal's locations as an index checkpoint gave them: one
/// vector that every version shares, of which positions `start..end` are
/// still the journal's, then the entries appended since, in a persistent
/// vector. Loading keeps the decoded vector where a persistent vector
/// costs a push per entry (most of an open's CPU), and reads index a
/// slice. Trimming and truncating move `start` and `end`; once less than
/// a quarter of the vector is in use the rest is copied into a new one, so
/// what it holds stays within four times the journal's locations. The
/// first change of a location in the vector (compaction moving it) turns
/// the whole into a `Large`, once per journal: the pushes open would have
/// made, made later and only for journals compaction moves. Never holds a
/// placeholder (a checkpoint has none; `push_missing` turns it into a
/// `Large` first).
#[derive(Clone, Debug)]
pub(crate) struct Flat {
    /// A vector rather than a slice: the decoded vector is shared as it
    /// is, not copied into an `Arc<[Loc]>`.
    base: Arc<Vec<Loc>>,
    start: usize,
    end: usize,
    tail: Vector<Loc>,
}

/// Entries among which lie runs of placeholders, each run one item however
/// long: the memory recovery spends on placeholders grows with the
/// operations replayed, not with the gaps their bounds describe (a gap of
/// 2^24 entries costs 8 bytes, not 128 MiB), and removing a run costs one
/// step. `items` is a `Small` or `Large`, never itself `Gaps`; each run in
/// it is a [`Loc::missing_run`], and two runs are never adjacent unless
/// the first is full (`u32::MAX` placeholders). A `Locs` whose last run is
/// removed becomes its `items` again, in O(1).
#[derive(Clone, Debug)]
pub(crate) struct Gaps {
    items: Locs,
    /// How many items are runs.
    runs: usize,
    /// How many placeholders the runs stand for.
    missing: u64,
}

/// Most entries a journal keeps in a [`Locs::Small`].
pub(crate) const SMALL_MAX: usize = 64;

impl Default for Locs {
    fn default() -> Self {
        Locs::Small(Vec::new())
    }
}

impl Locs {
    /// Number of positions (entries and placeholders).
    pub fn len(&self) -> usize {
        match self {
            Locs::Small(v) => v.len(),
            Locs::Large(v) => v.len(),
            Locs::Flat(f) => f.in_base() + f.tail.len(),
            Locs::Gaps(g) => (g.items.len() - g.runs) + g.missing as usize,
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The item at position `i` ([`Loc::MISSING`] for a placeholder).
    /// O(1) or O(log n) without placeholders; linear in the items with them.
    pub fn get(&self, i: usize) -> Option<&Loc> {
        match self {
            Locs::Small(v) => v.get(i),
            Locs::Large(v) => v.get(i),
            Locs::Flat(f) => match i.checked_sub(f.in_base()) {
                None => f.base.get(f.start + i),
                Some(k) => f.tail.get(k),
            },
            Locs::Gaps(g) => {
                let (k, _) = g.find(i)?;
                let item = g.items.get(k)?;
                Some(if item.is_missing() { &MISSING } else { item })
            }
        }
    }

    /// The location at position `i`; `None` outside or on a placeholder.
    pub fn get_mut(&mut self, i: usize) -> Option<&mut Loc> {
        if let Locs::Flat(f) = self {
            if i < f.in_base() {
                self.thaw();
            }
        }
        match self {
            Locs::Small(v) => v.get_mut(i),
            Locs::Large(v) => v.get_mut(i),
            Locs::Flat(f) => f.tail.get_mut(i.checked_sub(f.in_base())?),
            Locs::Gaps(g) => {
                let (k, _) = g.find(i)?;
                g.items.get_mut(k).filter(|l| !l.is_missing())
            }
        }
    }

    /// One item per position, [`Loc::MISSING`] for each placeholder.
    pub fn iter(&self) -> LocsIter<'_> {
        self.range(0..self.len())
    }

    /// The locations of positions `range` (clamped by the caller).
    pub fn range(&self, range: std::ops::Range<usize>) -> LocsIter<'_> {
        match self {
            Locs::Small(v) => LocsIter::Small(v[range].iter()),
            Locs::Large(v) => LocsIter::Large(v.focus().narrow(range).into_iter()),
            Locs::Flat(f) => {
                let n = f.in_base();
                let base = &f.base[f.start + range.start.min(n)..f.start + range.end.min(n)];
                let tail = range.start.saturating_sub(n)..range.end.saturating_sub(n);
                LocsIter::Flat(base.iter().chain(f.tail.focus().narrow(tail)))
            }
            Locs::Gaps(g) => LocsIter::Gaps(GapsIter {
                items: Box::new(g.items.iter()),
                run: 0,
                skip: range.start as u64,
                left: range.len() as u64,
            }),
        }
    }

    /// The position of the first placeholder, if any. Only a `Gaps` holds
    /// placeholders, so this is O(1) for any other.
    pub fn first_placeholder(&self) -> Option<u64> {
        match self {
            Locs::Gaps(_) => self.iter().position(|l| l.is_missing()).map(|p| p as u64),
            Locs::Small(_) | Locs::Large(_) | Locs::Flat(_) => None,
        }
    }

    /// The stored items: one per location, one per run of placeholders
    /// (whatever its length). Linear in what replay stored.
    pub fn stored(&self) -> LocsIter<'_> {
        match self {
            Locs::Gaps(g) => g.items.iter(),
            other => other.iter(),
        }
    }

    /// The locations `v` (an index checkpoint's, which holds no
    /// placeholder): a `Small` up to [`SMALL_MAX`], else a [`Flat`].
    pub fn from_vec(v: Vec<Loc>) -> Locs {
        debug_assert!(!v.iter().any(|l| l.is_missing()));
        if v.len() <= SMALL_MAX {
            Locs::Small(v)
        } else {
            Locs::Flat(Box::new(Flat {
                start: 0,
                end: v.len(),
                base: Arc::new(v),
                tail: Vector::new(),
            }))
        }
    }

    /// A `Flat` becomes the `Large` of the same locations.
    fn thaw(&mut self) {
        if let Locs::Flat(f) = self {
            let mut large: Vector<Loc> = f.base[f.start..f.end].iter().copied().collect();
            large.append(std::mem::take(&mut f.tail));
            *self = Locs::Large(large);
        }
    }

    pub fn push_back(&mut self, loc: Loc) {
        match self {
            Locs::Small(v) if v.len() < SMALL_MAX => {
                // Grow by small steps: the point is not to over-allocate.
                if v.len() == v.capacity() {
                    v.reserve_exact(4);
                }
                v.push(loc);
            }
            Locs::Small(v) => {
                let mut large: Vector<Loc> = v.iter().copied().collect();
                large.push_back(loc);
                *self = Locs::Large(large);
            }
            Locs::Large(v) => v.push_back(loc),
            Locs::Flat(f) => f.tail.push_back(loc),
            Locs::Gaps(g) => g.items.push_back(loc),
        }
    }

    /// Appends `n` placeholders (recovery only), as one item or by
    /// lengthening the run at the back.
    pub fn push_missing(&mut self, mut n: u64) {
        if n == 0 {
            return;
        }
        if !matches!(self, Locs::Gaps(_)) {
            // A `Gaps`' items are a `Small` or `Large`.
            self.thaw();
            let items = std::mem::take(self);
            *self = Locs::Gaps(Box::new(Gaps {
                items,
                runs: 0,
                missing: 0,
            }));
        }
        let Locs::Gaps(g) = self else {
            return;
        };
        g.missing += n;
        let back = g.items.len().checked_sub(1);
        if let Some(last) = back.and_then(|k| g.items.get_mut(k)) {
            if let Some(run) = last.run_len() {
                let add = n.min(u64::from(u32::MAX - run));
                *last = Loc::missing_run(run + add as u32);
                n -= add;
            }
        }
        while n > 0 {
            let run = n.min(u64::from(u32::MAX));
            g.items.push_back(Loc::missing_run(run as u32));
            g.runs += 1;
            crate::work::placeholder_items(1);
            n -= run;
        }
    }

    #[cfg(test)]
    pub fn pop_back(&mut self) -> Option<Loc> {
        let mut out = None;
        self.drop_back(1, |loc| out = Some(loc));
        out
    }

    #[cfg(test)]
    pub fn pop_front(&mut self) -> Option<Loc> {
        let mut out = None;
        self.drop_front(1, |loc| out = Some(loc));
        out
    }

    /// Removes the last `n` positions (all of them if fewer), handing each
    /// item removed to `removed` ([`Loc::MISSING`] once per run or part of
    /// a run). Each location costs one step, each run one step.
    pub fn drop_back(&mut self, mut n: u64, mut removed: impl FnMut(Loc)) {
        match self {
            Locs::Small(v) => {
                let keep = v.len().saturating_sub(clamp(n));
                v.drain(keep..).rev().for_each(removed);
            }
            Locs::Large(v) => {
                while n > 0 {
                    let Some(loc) = v.pop_back() else { break };
                    removed(loc);
                    n -= 1;
                }
            }
            Locs::Flat(f) => {
                while n > 0 {
                    let Some(loc) = f.tail.pop_back() else { break };
                    removed(loc);
                    n -= 1;
                }
                let keep = f.in_base().saturating_sub(clamp(n));
                f.base[f.start + keep..f.end]
                    .iter()
                    .rev()
                    .copied()
                    .for_each(&mut removed);
                f.end = f.start + keep;
                f.compact_base();
            }
            Locs::Gaps(g) => {
                while n > 0 {
                    let Some(item) = g.items.remove_last() else {
                        break;
                    };
                    let taken = g.take(item, n);
                    if taken < item.weight() {
                        g.items
                            .push_back(Loc::missing_run((item.weight() - taken) as u32));
                    }
                    removed(if item.is_missing() {
                        Loc::MISSING
                    } else {
                        item
                    });
                    n -= taken;
                }
            }
        }
        self.settle();
    }

    /// Removes the first `n` positions (all of them if fewer), as
    /// [`Locs::drop_back`] does at the back.
    pub fn drop_front(&mut self, mut n: u64, mut removed: impl FnMut(Loc)) {
        match self {
            Locs::Small(v) => {
                let end = v.len().min(clamp(n));
                v.drain(..end).for_each(removed);
            }
            Locs::Large(v) => {
                while n > 0 {
                    let Some(loc) = v.pop_front() else { break };
                    removed(loc);
                    n -= 1;
                }
            }
            Locs::Flat(f) => {
                let from_base = f.in_base().min(clamp(n));
                f.base[f.start..f.start + from_base]
                    .iter()
                    .copied()
                    .for_each(&mut removed);
                f.start += from_base;
                n -= from_base as u64;
                while n > 0 {
                    let Some(loc) = f.tail.pop_front() else { break };
                    removed(loc);
                    n -= 1;
                }
                f.compact_base();
            }
            Locs::Gaps(g) => {
                while n > 0 {
                    let Some(&item) = g.items.get(0) else {
                        break;
                    };
                    let taken = g.take(item, n);
                    if taken < item.weight() {
                        if let Some(first) = g.items.get_mut(0) {
                            *first = Loc::missing_run((item.weight() - taken) as u32);
                        }
                    } else {
                        g.items.remove_first();
                    }
                    removed(if item.is_missing() {
                        Loc::MISSING
                    } else {
                        item
                    });
                    n -= taken;
                }
            }
        }
        self.settle();
    }

    /// Removes the last item of a `Small` or `Large`.
    fn remove_last(&mut self) -> Option<Loc> {
        match self {
            Locs::Small(v) => v.pop(),
            Locs::Large(v) => v.pop_back(),
            Locs::Flat(_) | Locs::Gaps(_) => None,
        }
    }

    /// Removes the first item of a `Small` or `Large`.
    fn remove_first(&mut self) {
        match self {
            Locs::Small(v) if !v.is_empty() => {
                v.remove(0);
            }
            Locs::Large(v) => {
                v.pop_front();
            }
            _ => {}
        }
    }

    /// A `Gaps` left without a run becomes its items again; a `Flat` whose
    /// shared vector is used up becomes its appended entries.
    fn settle(&mut self) {
        match self {
            Locs::Gaps(g) if g.runs == 0 => {
                let items = std::mem::take(&mut g.items);
                *self = items;
            }
            Locs::Flat(f) if f.in_base() == 0 => {
                *self = Locs::Large(std::mem::take(&mut f.tail));
            }
            _ => {}
        }
    }
}

impl Flat {
    /// Positions still taken from the shared vector.
    fn in_base(&self) -> usize {
        self.end - self.start
    }

    /// Copies the positions in use into a vector of their own once they are
    /// less than a quarter of it: each copy is paid for by the three times
    /// as many positions removed since the last.
    fn compact_base(&mut self) {
        if self.in_base() > 0 && self.in_base() * 4 < self.base.len() {
            self.base = Arc::new(self.base[self.start..self.end].to_vec());
            self.end = self.in_base();
            self.start = 0;
        }
    }
}

impl Gaps {
    /// The index of the item covering position `i`, and the position where
    /// that item starts.
    fn find(&self, i: usize) -> Option<(usize, u64)> {
        let i = i as u64;
        let mut at = 0u64;
        for (k, item) in self.items.iter().enumerate() {
            let next = at + item.weight();
            if i < next {
                return Some((k, at));
            }
            at = next;
        }
        None
    }

    /// Accounts for taking up to `n` positions from `item`, just removed
    /// from one end; returns how many it gave.
    fn take(&mut self, item: Loc, n: u64) -> u64 {
        let taken = item.weight().min(n);
        if item.is_missing() {
            self.missing -= taken;
            if taken == item.weight() {
                self.runs -= 1;
            }
        }
        taken
    }
}

/// `n` as a count of positions in memory.
fn clamp(n: u64) -> usize {
    usize::try_from(n).unwrap_or(usize::MAX)
}

/// Iterator over [`Locs`].
#[derive(Clone)]
pub(crate) enum LocsIter<'a> {
    Small(std::slice::Iter<'a, Loc>),
    Large(ImblIter<'a>),
    Flat(std::iter::Chain<std::slice::Iter<'a, Loc>, ImblIter<'a>>),
    Gaps(GapsIter<'a>),
}

type ImblIter<'a> = imbl::vector::Iter<'a, Loc, imbl::shared_ptr::DefaultSharedPtr>;

/// Positions of a [`Gaps`]: each run expanded into its placeholders.
#[derive(Clone)]
pub(crate) struct GapsIter<'a> {
    items: Box<LocsIter<'a>>,
    /// Placeholders left in the run being expanded.
    run: u64,
    /// Positions still to pass over before the first one yielded.
    skip: u64,
    /// Positions still to yield.
    left: u64,
}

impl<'a> Iterator for GapsIter<'a> {
    type Item = &'a Loc;

    fn next(&mut self) -> Option<&'a Loc> {
        while self.left > 0 {
            if self.run > 0 {
                if self.skip > 0 {
                    let passed = self.skip.min(self.run);
                    self.skip -= passed;
                    self.run -= passed;
                    continue;
                }
                self.run -= 1;
                self.left -= 1;
                return Some(&MISSING);
            }
            let item = self.items.next()?;
            if let Some(run) = item.run_len() {
                self.run = u64::from(run);
            } else if self.skip > 0 {
                self.skip -= 1;
            } else {
                self.left -= 1;
                return Some(item);
            }
        }
        None
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        (0, Some(clamp(self.left)))
    }
}

impl<'a> Iterator for LocsIter<'a> {
    type Item = &'a Loc;

    fn next(&mut self) -> Option<&'a Loc> {
        match self {
            LocsIter::Small(i) => i.next(),
            LocsIter::Large(i) => i.next(),
            LocsIter::Flat(i) => i.next(),
            LocsIter::Gaps(i) => i.next(),
        }
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        match self {
            LocsIter::Small(i) => i.size_hint(),
            LocsIter::Large(i) => i.size_hint(),
            LocsIter::Flat(i) => i.size_hint(),
            LocsIter::Gaps(i) => i.size_hint(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A xorshift generator: each call gives a number below its argument.
    fn xorshift(mut state: u64) -> impl FnMut(u64) -> u64 {
        move |n| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state % n
        }
    }

    /// The location at `offset` of `segment`.
    fn at(segment: u32, offset: u64) -> Loc {
        Loc {
            segment,
            offset: offset as u32,
        }
    }

    /// `locs` as the model holds it: one item per position, `None` for a
    /// placeholder.
    fn expand<'a>(locs: impl Iterator<Item = &'a Loc>) -> Vec<Option<Loc>> {
        locs.map(|l| (!l.is_missing()).then_some(*l)).collect()
    }

    /// Removes `n` positions from the back (or the front) of `locs` and of
    /// `model`, and checks that `locs` handed out the locations the model
    /// lost, in the order it removed them.
    fn drop_both(locs: &mut Locs, model: &mut Vec<Option<Loc>>, n: u64, back: bool, ctx: &str) {
        let mut removed = Vec::new();
        let want: Vec<Loc> = if back {
            locs.drop_back(n, |l| removed.push(l));
            let keep = model.len().saturating_sub(n as usize);
            model.drain(keep..).rev().flatten().collect()
        } else {
            locs.drop_front(n, |l| removed.push(l));
            let end = model.len().min(n as usize);
            model.drain(..end).flatten().collect()
        };
        let got: Vec<Loc> = removed.into_iter().filter(|l| !l.is_missing()).collect();
        assert_eq!(got, want, "{ctx}");
    }

    /// `locs` holds `model`: the same length, positions, a range of them
    /// from `a` to `b`, and the items at a few positions.
    fn assert_holds(locs: &Locs, model: &[Option<Loc>], a: usize, b: usize, ctx: &str) {
        assert_eq!(locs.len(), model.len(), "{ctx}");
        assert_eq!(expand(locs.iter()), model, "{ctx}");
        assert_eq!(expand(locs.range(a..b)), model[a..b], "{ctx}");
        for i in [0, a, b.saturating_sub(1), model.len()] {
            let got = locs.get(i).copied().filter(|l| !l.is_missing());
            assert_eq!(got, model.get(i).copied().flatten(), "{ctx} at {i}");
        }
    }

    /// `Locs` behaves as a plain vector whether small or large, across the
    /// switch at `SMALL_MAX`, and a clone (a published version) is not
    /// changed by later edits of the original.
    #[test]
    fn locs_match_a_vector_across_the_small_large_switch() {
        let loc = |i: u32| Loc {
            segment: 1,
            offset: i,
        };
        let mut locs = Locs::default();
        let mut model: Vec<Loc> = Vec::new();
        let mut clones = Vec::new();
        for step in 0..400u32 {
            match step % 7 {
                0..=3 => {
                    locs.push_back(loc(step));
                    model.push(loc(step));
                }
                4 => assert_eq!(
                    locs.pop_front(),
                    (!model.is_empty()).then(|| model.remove(0))
                ),
                5 if step % 3 == 0 => assert_eq!(locs.pop_back(), model.pop()),
                _ => {
                    if let (Some(a), Some(b)) = (locs.get_mut(0), model.get_mut(0)) {
                        *a = loc(10_000 + step);
                        *b = loc(10_000 + step);
                    }
                }
            }
            if step % 50 == 0 {
                clones.push((locs.clone(), model.clone()));
            }
            assert_eq!(locs.len(), model.len());
            assert!(locs.iter().eq(model.iter()), "step {step}");
            let mid = model.len() / 2;
            assert!(locs.range(mid..model.len()).eq(model[mid..].iter()));
            assert_eq!(locs.get(mid), model.get(mid));
        }
        assert!(matches!(locs, Locs::Large(_)), "grew past SMALL_MAX");
        for (c, m) in &clones {
            assert!(c.iter().eq(m.iter()));
        }
    }

    /// Locations loaded as a `Flat` behave as a plain vector under pushes,
    /// removals at both ends (past the slice and back into the appended
    /// entries), changes of a location and placeholder runs; a clone (a
    /// published version) is not changed by later edits of the original;
    /// and the slice is given up once less than a quarter of it is used.
    #[test]
    fn flat_locs_behave_as_a_vector() {
        let mut next = xorshift(0x9e37_79b9_7f4a_7c15);
        let loc = |i: u64| at(2, i);
        let (mut shrunk, mut thawed, mut used_up) = (false, false, false);
        for round in 0..40u64 {
            let loaded: Vec<Loc> = (0..(SMALL_MAX as u64 + 1 + next(300))).map(loc).collect();
            let mut locs = Locs::from_vec(loaded.clone());
            assert!(matches!(locs, Locs::Flat(_)));
            let slice_len = loaded.len();
            let mut model: Vec<Option<Loc>> = loaded.into_iter().map(Some).collect();
            let mut clones = Vec::new();
            for step in 0..200u64 {
                let ctx = format!("round {round} step {step}");
                let was_flat = matches!(locs, Locs::Flat(_));
                let op = next(10);
                match op {
                    0..=2 => {
                        locs.push_back(loc(1000 + step));
                        model.push(Some(loc(1000 + step)));
                    }
                    3..=6 => drop_both(&mut locs, &mut model, next(40), op < 5, &ctx),
                    7 if next(8) == 0 => {
                        let n = 1 + next(5);
                        locs.push_missing(n);
                        model.extend((0..n).map(|_| None));
                    }
                    8 if next(10) == 0 && !model.is_empty() => {
                        let i = next(model.len() as u64) as usize;
                        let changed = locs.get_mut(i).map(|l| *l = loc(5000 + step)).is_some();
                        assert_eq!(changed, model[i].is_some(), "{ctx}");
                        if let Some(m) = model[i].as_mut() {
                            *m = loc(5000 + step);
                        }
                    }
                    _ => {}
                }
                if let Locs::Flat(f) = &locs {
                    assert!(
                        f.in_base() * 4 >= f.base.len(),
                        "{ctx}: slice kept too long"
                    );
                    shrunk |= f.base.len() < slice_len;
                }
                if was_flat && !matches!(locs, Locs::Flat(_)) {
                    match op {
                        3..=6 => used_up = true,
                        _ => thawed = true,
                    }
                }
                if step % 40 == 0 {
                    clones.push((locs.clone(), model.clone()));
                }
                let (a, b) = (model.len() / 3, model.len() - model.len() / 4);
                assert_holds(&locs, &model, a, b, &ctx);
            }
            for (c, m) in &clones {
                assert_eq!(&expand(c.iter()), m, "round {round}: a clone changed");
            }
        }
        assert!(
            shrunk && thawed && used_up,
            "every path was exercised: shrunk {shrunk}, thawed {thawed}, used up {used_up}"
        );
    }

    /// `Locs` with runs of placeholders behaves as the plain vector of one
    /// item per position (`None` for a placeholder) under random pushes,
    /// placeholder runs and removals at both ends, and stores one item per
    /// run; once the last run is gone it is a plain `Small`/`Large` again.
    #[test]
    fn placeholder_runs_behave_as_one_item_per_position() {
        let mut next = xorshift(0x2545_f491_4f6c_dd1d);
        let loc = |i: u64| at(1, i);
        let mut locs = Locs::default();
        let mut model: Vec<Option<Loc>> = Vec::new();
        let (mut large, mut plain_again) = (false, false);
        for step in 0..3000u64 {
            let ctx = format!("step {step}");
            match next(8) {
                0..=2 => {
                    locs.push_back(loc(step));
                    model.push(Some(loc(step)));
                }
                3 => {
                    let n = 1 + next(40);
                    locs.push_missing(n);
                    model.extend((0..n).map(|_| None));
                }
                k => {
                    // Grow for a while (into a `Large`), then shrink.
                    let n = next(if step < 1500 { 10 } else { 60 });
                    drop_both(&mut locs, &mut model, n, k < 6, &ctx);
                }
            }
            let mid = model.len() / 3;
            assert_holds(&locs, &model, mid, model.len() - mid, &ctx);
            if let Some(want) = model.get(mid) {
                let got = locs.get(mid).copied();
                assert_eq!(got.filter(|l| !l.is_missing()), *want, "step {step}");
                assert_eq!(locs.get_mut(mid).map(|l| *l), *want, "step {step}");
            }
            let runs = model
                .iter()
                .zip(std::iter::once(&Some(loc(0))).chain(model.iter()))
                .filter(|(now, before)| now.is_none() && before.is_some())
                .count();
            let items = model.iter().filter(|l| l.is_some()).count() + runs;
            assert_eq!(locs.stored().count(), items, "step {step}");
            let first_none = model.iter().position(Option::is_none).map(|p| p as u64);
            assert_eq!(locs.first_placeholder(), first_none, "step {step}");
            assert_eq!(
                matches!(locs, Locs::Gaps(_)),
                runs > 0,
                "step {step}: a Locs without placeholders is plain"
            );
            if let Locs::Gaps(g) = &locs {
                large |= matches!(g.items, Locs::Large(_));
            } else {
                plain_again |= step > 0 && !model.is_empty();
            }
        }
        assert!(large && plain_again, "both shapes were exercised");
    }
}
