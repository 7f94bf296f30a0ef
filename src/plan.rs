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

/// What validation needs to know of a journal (None = absent).
type Shape = Option<JournalShape>;

/// A journal's bounds and whether it has metadata, while validating.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct JournalShape {
    first: u64,
    end: u64,
    metadata: bool,
}

/// What one operation does to its journal.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Effect {
    /// Nothing: the operation is left out (format-spec 4.3).
    NoOp,
    /// The journal is deleted.
    Deleted,
    /// The journal exists with this shape after it.
    Shape(JournalShape),
}

/// The shapes a batch being validated has set so far, by journal.
#[derive(Default)]
struct Overlay<'b> {
    list: Vec<(&'b [u8], Shape)>,
    map: HashMap<&'b [u8], Shape>,
}

impl<'b> Overlay<'b> {
    const LIST_MAX: usize = 16;

    fn get(&self, id: &[u8]) -> Option<Shape> {
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

    fn insert(&mut self, id: &'b [u8], shape: Shape) {
        if self.list.len() < Self::LIST_MAX {
            self.list.push((id, shape));
            if self.list.len() == Self::LIST_MAX {
                self.map.extend(self.list.iter().copied());
            }
        } else {
            self.map.insert(id, shape);
        }
    }
}

/// The effect of one request on a journal of shape `shape`, by the rules
/// `WriteBatch` documents:
/// - `append` continues at `end_index` (0 for a new journal);
/// - `trim_prefix(n)` keeps `n..`: nothing below `first_index`, the journal
///   emptied at `n` past `end_index`, a missing journal created empty at `n`;
/// - `truncate(n)` keeps `..n`: nothing at or past `end_index`, the journal
///   emptied at `n` below `first_index`, nothing on a missing journal;
/// - `clear_metadata` and `delete_journal` change nothing where there is
///   nothing to remove.
///
/// Only indexes beyond the format's limit ([`MAX_INDEX`]) and `append_at`
/// at an index other than the end are errors.
fn effect(id: &[u8], request: Request, shape: Shape) -> Result<Effect> {
    let range_err = |op, index, s: Option<JournalShape>| {
        let (first, end) = s.map_or((0, 0), |s| (s.first, s.end));
        Error::InvalidRange {
            journal: id.to_vec(),
            op,
            index,
            first,
            end,
        }
    };
    let empty_at = |n: u64, metadata: bool| {
        Effect::Shape(JournalShape {
            first: n,
            end: n,
            metadata,
        })
    };
    Ok(match (request, shape) {
        (Request::Append(expected), s) => {
            let s = s.unwrap_or(JournalShape {
                first: 0,
                end: 0,
                metadata: false,
            });
            if let Some(want) = expected {
                if want != s.end {
                    return Err(Error::UnexpectedIndex {
                        journal: id.to_vec(),
                        expected: want,
                        actual: s.end,
                    });
                }
            }
            if s.end >= MAX_INDEX {
                return Err(range_err("append", s.end, Some(s)));
            }
            Effect::Shape(JournalShape {
                end: s.end + 1,
                ..s
            })
        }
        (Request::SetMetadata, s) => {
            let (first, end) = s.map_or((0, 0), |s| (s.first, s.end));
            Effect::Shape(JournalShape {
                first,
                end,
                metadata: true,
            })
        }
        (Request::ClearMetadata, Some(s)) if s.metadata => Effect::Shape(JournalShape {
            metadata: false,
            ..s
        }),
        (Request::ClearMetadata, _) => Effect::NoOp,
        (Request::TrimPrefix(n) | Request::Truncate(n), s) if n > MAX_INDEX => {
            let op = if matches!(request, Request::TrimPrefix(_)) {
                "trim_prefix"
            } else {
                "truncate"
            };
            return Err(range_err(op, n, s));
        }
        (Request::TrimPrefix(n), None) => empty_at(n, false),
        (Request::TrimPrefix(n), Some(s)) if n <= s.first => Effect::NoOp,
        (Request::TrimPrefix(n), Some(s)) if n <= s.end => {
            Effect::Shape(JournalShape { first: n, ..s })
        }
        (Request::TrimPrefix(n), Some(s)) => empty_at(n, s.metadata),
        (Request::Truncate(_), None) => Effect::NoOp,
        (Request::Truncate(n), Some(s)) if n >= s.end => Effect::NoOp,
        (Request::Truncate(n), Some(s)) if n >= s.first => {
            Effect::Shape(JournalShape { end: n, ..s })
        }
        (Request::Truncate(n), Some(s)) => empty_at(n, s.metadata),
        (Request::Delete, None) => Effect::NoOp,
        (Request::Delete, Some(_)) => Effect::Deleted,
    })
}

/// Checks `batch` against `index` (the latest state) and computes the
/// bounds each operation leaves its journal with. No-ops are left out: an
/// operation on disk always changes something, which recovery relies on.
pub(crate) fn plan<'b>(index: &Index, batch: &'b WriteBatch) -> Result<Vec<PlannedOp<'b>>> {
    // Shapes this batch has already changed. Most batches touch a few
    // journals, so a list searched from its newest end beats hashing;
    // large batches switch to a map.
    let mut overlay = Overlay::default();
    let mut plan = Vec::with_capacity(batch.ops.len());
    for op in &batch.ops {
        let id = batch.id(op);
        let shape = match overlay.get(id) {
            Some(s) => s,
            None => index.get(id).map(|s| JournalShape {
                first: s.first,
                end: s.end(),
                metadata: s.metadata.is_some(),
            }),
        };
        let (after, (first, end)) = match effect(id, op.request, shape)? {
            Effect::NoOp => continue,
            Effect::Deleted => (None, (0, 0)),
            Effect::Shape(s) => (Some(s), (s.first, s.end)),
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
        let mut latest: HashMap<&[u8], Shape> = HashMap::new();
        for (n, id) in ids.iter().enumerate() {
            let bounds = (n % 5 != 0).then_some(JournalShape {
                first: n as u64,
                end: 2 * n as u64,
                metadata: n % 2 == 0,
            });
            overlay.insert(id, bounds);
            latest.insert(id, bounds);
            for (k, b) in &latest {
                assert_eq!(overlay.get(k), Some(*b), "after {n} inserts");
            }
            assert_eq!(overlay.get(b"other"), None);
        }
    }
}
