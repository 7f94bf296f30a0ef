//! Validation: a batch checked against the latest state, operation by
//! operation, becomes the list of operations to encode.
//!
//! Invariants:
//! - A batch is validated against the state left by earlier batches and its
//!   own earlier operations; one invalid operation rejects the whole batch.
//! - Operations that change nothing are left out: every operation on disk
//!   changes its journal, which recovery relies on (format-spec 4.3).

use std::collections::HashMap;

use crate::batch::{Request, WriteBatch};
use crate::error::{Error, Result};
use crate::index::Index;
use crate::record::{PlannedOp, MAX_INDEX};

/// Bounds of a journal while validating (None = absent).
type Bounds = Option<(u64, u64)>;

/// What one operation does to its journal.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Effect {
    /// Nothing: the operation is left out (format-spec 4.3).
    NoOp,
    /// The journal is deleted.
    Deleted,
    /// The journal exists with these bounds (`first`, `end`) after it.
    Bounds(u64, u64),
}

/// The bounds a batch being validated has set so far, by journal.
#[derive(Default)]
struct Overlay<'b> {
    list: Vec<(&'b [u8], Bounds)>,
    map: HashMap<&'b [u8], Bounds>,
}

impl<'b> Overlay<'b> {
    const LIST_MAX: usize = 16;

    fn get(&self, id: &[u8]) -> Option<Bounds> {
        if self.list.len() < Self::LIST_MAX {
            self.list
                .iter()
                .rev()
                .find(|(k, _)| *k == id)
                .map(|(_, b)| *b)
        } else {
            self.map.get(id).copied()
        }
    }

    fn insert(&mut self, id: &'b [u8], bounds: Bounds) {
        if self.list.len() < Self::LIST_MAX {
            self.list.push((id, bounds));
            if self.list.len() == Self::LIST_MAX {
                self.map.extend(self.list.iter().copied());
            }
        } else {
            self.map.insert(id, bounds);
        }
    }
}

/// Checks `batch` against `index` (the latest state) and computes the
/// bounds each operation leaves its journal with. No-ops are left out: an
/// operation on disk always changes something, which recovery relies on.
pub(crate) fn plan<'b>(index: &Index, batch: &'b WriteBatch) -> Result<Vec<PlannedOp<'b>>> {
    // Bounds this batch has already changed. Most batches touch a few
    // journals, so a list searched from its newest end beats hashing;
    // large batches switch to a map.
    let mut overlay = Overlay::default();
    let mut plan = Vec::with_capacity(batch.ops.len());
    for op in &batch.ops {
        let id = batch.id(op);
        let bounds = match overlay.get(id) {
            Some(b) => b,
            None => index.get(id).map(|s| (s.first, s.end())),
        };
        let range_err = |op_name, index, (first, end): (u64, u64)| Error::InvalidRange {
            journal: id.to_vec(),
            op: op_name,
            index,
            first,
            end,
        };
        let effect = match (op.request, bounds) {
            (Request::Append(expected), b) => {
                let (first, end) = b.unwrap_or((0, 0));
                if let Some(want) = expected {
                    if want != end {
                        return Err(Error::UnexpectedIndex {
                            journal: id.to_vec(),
                            expected: want,
                            actual: end,
                        });
                    }
                }
                if end >= MAX_INDEX {
                    return Err(range_err("append", end, (first, end)));
                }
                Effect::Bounds(first, end + 1)
            }
            (Request::SetMetadata, b) => {
                let (first, end) = b.unwrap_or((0, 0));
                Effect::Bounds(first, end)
            }
            (Request::TrimPrefix(_) | Request::Truncate(_) | Request::Delete, None) => Effect::NoOp,
            (Request::TrimPrefix(t), Some((first, end))) => {
                if t > end {
                    return Err(range_err("trim_prefix", t, (first, end)));
                }
                if t > first {
                    Effect::Bounds(t, end)
                } else {
                    Effect::NoOp
                }
            }
            (Request::Truncate(t), Some((first, end))) => {
                if t < first {
                    return Err(range_err("truncate", t, (first, end)));
                }
                if t < end {
                    Effect::Bounds(first, t)
                } else {
                    Effect::NoOp
                }
            }
            (Request::Delete, Some(_)) => Effect::Deleted,
        };
        let (after, (first, end)) = match effect {
            Effect::NoOp => continue,
            Effect::Deleted => (None, (0, 0)),
            Effect::Bounds(first, end) => (Some((first, end)), (first, end)),
        };
        overlay.insert(id, after);
        plan.push(PlannedOp {
            kind: op.request.kind(),
            id,
            value: batch.value(op),
            value_crc: op.value_crc,
            first,
            end,
        });
    }
    Ok(plan)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The overlay answers with the latest bounds set for a journal, before
    /// and after it switches from its list to its map, and nothing for a
    /// journal the batch has not touched.
    #[test]
    fn overlay_returns_the_latest_bounds_across_the_switch() {
        let ids: Vec<Vec<u8>> = (0..40u8).map(|i| vec![b'j', i % 7]).collect();
        let mut overlay = Overlay::default();
        let mut latest: HashMap<&[u8], Bounds> = HashMap::new();
        for (n, id) in ids.iter().enumerate() {
            let bounds = (n % 5 != 0).then_some((n as u64, 2 * n as u64));
            overlay.insert(id, bounds);
            latest.insert(id, bounds);
            for (k, b) in &latest {
                assert_eq!(overlay.get(k), Some(*b), "after {n} inserts");
            }
            assert_eq!(overlay.get(b"other"), None);
        }
    }
}
