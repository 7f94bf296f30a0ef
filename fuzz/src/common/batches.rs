//! Batches decoded from fuzz input, and the answer the store must give to
//! each (`ops_model`, `crash_recovery`).

use arbitrary::Unstructured;
use journalstore::Error;

use super::{
    align8, MAX_ENTRY, MAX_METADATA, OP_HEADER_LEN, RECORD_HEADER_LEN, SEGMENT_HEADER_LEN,
    SEGMENT_SIZE,
};
use crate::model::{Model, Op, Reject};

/// The journals random batches use: three short ids and the longest one.
pub(crate) const IDS: [&[u8]; 4] = [b"a", b"b", b"c", &[b'z'; 255]];

/// A journal id: almost always one of [`IDS`], rarely an invalid one
/// (empty or 256 bytes) when `invalid_ok`.
pub(crate) fn pick_id(u: &mut Unstructured, invalid_ok: bool) -> arbitrary::Result<Vec<u8>> {
    let pick: u8 = u.arbitrary()?;
    Ok(match pick {
        252 | 253 if invalid_ok => Vec::new(),
        254 | 255 if invalid_ok => vec![b'x'; 256],
        _ => IDS[usize::from(pick % 4)].to_vec(),
    })
}

/// A value of a length the input picks (mostly short; with `allow_big`
/// sometimes past the store's limits), filled with a pattern that differs
/// from one value to the next.
pub(crate) fn pick_value(
    u: &mut Unstructured,
    max: usize,
    allow_big: bool,
) -> arbitrary::Result<Vec<u8>> {
    let big = allow_big && u.ratio(1, 12)?;
    let max = if big { max * 4 + 64 } else { max };
    let len = u.int_in_range(0..=max)?;
    let fill: u8 = u.arbitrary()?;
    Ok((0..len)
        .map(|i| fill.wrapping_add((i as u8).wrapping_mul(13)))
        .collect())
}

/// An index near the journal's bounds: mostly inside, sometimes just
/// outside, rarely anything.
pub(crate) fn pick_index(u: &mut Unstructured, first: u64, end: u64) -> arbitrary::Result<u64> {
    Ok(match u.int_in_range(0..=11u8)? {
        0 => first.saturating_sub(1),
        1 => end + 1,
        2 => u.arbitrary()?,
        3 => end + u64::from(u.arbitrary::<u16>()?),
        4 => journalstore::record::MAX_INDEX - u64::from(u.int_in_range(0..=2u8)?),
        _ => first + u.int_in_range(0..=end - first)?,
    })
}

/// One batch of 1..=6 operations over [`IDS`]. Indexes are chosen against
/// the state the batch's earlier operations leave (`model` plus them), so
/// most batches are valid and the invalid ones fail for one reason.
pub(crate) fn gen_batch(
    u: &mut Unstructured,
    model: &Model,
    max_value: usize,
    invalid_ok: bool,
) -> arbitrary::Result<Vec<Op>> {
    let n = u.int_in_range(1..=6u8)?;
    let mut staging = model.clone();
    let mut ops = Vec::new();
    for _ in 0..n {
        let id = pick_id(u, invalid_ok)?;
        let (first, end) = staging
            .journals
            .get(&id)
            .map_or((0, 0), |j| (j.first, j.end()));
        let op = match u.int_in_range(0..=99u8)? {
            0..=39 => Op::Append(id, None, pick_value(u, max_value, invalid_ok)?),
            40..=54 => {
                let at = match u.int_in_range(0..=11u8)? {
                    0 => end + 1,
                    1 => end.saturating_sub(1),
                    2 => u.arbitrary()?,
                    _ => end,
                };
                Op::Append(id, Some(at), pick_value(u, max_value, invalid_ok)?)
            }
            55..=65 => Op::SetMetadata(id, pick_value(u, 64, invalid_ok)?),
            66..=69 => Op::ClearMetadata(id),
            70..=81 => Op::Trim(id, pick_index(u, first, end)?),
            82..=93 => Op::Truncate(id, pick_index(u, first, end)?),
            _ => Op::Delete(id),
        };
        let _ = staging.apply(std::slice::from_ref(&op));
        ops.push(op);
    }
    Ok(ops)
}

/// How `Store::write` must answer a batch.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Outcome {
    Ok,
    InvalidJournalId,
    ValueTooLarge,
    UnexpectedIndex,
    InvalidRange,
    BatchTooLarge,
}

pub(crate) fn op_parts(op: &Op) -> (&[u8], &[u8], u64) {
    match op {
        Op::Append(id, _, v) => (id, v, MAX_ENTRY),
        Op::SetMetadata(id, v) => (id, v, MAX_METADATA),
        Op::ClearMetadata(id) | Op::Trim(id, _) | Op::Truncate(id, _) | Op::Delete(id) => {
            (id, &[], MAX_ENTRY)
        }
    }
}

/// The documented answer to `ops` on a store in state `model`: limits that
/// do not depend on the state first (in batch order), then the operations
/// in order against the state, then the record size against a segment.
pub(crate) fn expected(model: &Model, ops: &[Op]) -> Outcome {
    for op in ops {
        let (id, value, max) = op_parts(op);
        if id.is_empty() || id.len() > 255 {
            return Outcome::InvalidJournalId;
        }
        if value.len() as u64 > max {
            return Outcome::ValueTooLarge;
        }
    }
    let mut m = model.clone();
    for op in ops {
        match m.apply_checked(std::slice::from_ref(op)) {
            Ok(()) => {}
            Err(Reject::UnexpectedIndex) => return Outcome::UnexpectedIndex,
            Err(Reject::InvalidRange) => return Outcome::InvalidRange,
        }
    }
    let payload: usize = ops
        .iter()
        .map(|op| {
            let (id, value, _) = op_parts(op);
            OP_HEADER_LEN + id.len() + value.len()
        })
        .sum();
    if align8(RECORD_HEADER_LEN + payload) > SEGMENT_SIZE as usize - SEGMENT_HEADER_LEN {
        return Outcome::BatchTooLarge;
    }
    Outcome::Ok
}

pub(crate) fn outcome_of(e: &Error) -> Option<Outcome> {
    Some(match e {
        Error::InvalidJournalId { .. } => Outcome::InvalidJournalId,
        Error::ValueTooLarge { .. } => Outcome::ValueTooLarge,
        Error::UnexpectedIndex { .. } => Outcome::UnexpectedIndex,
        Error::InvalidRange { .. } => Outcome::InvalidRange,
        Error::BatchTooLarge { .. } => Outcome::BatchTooLarge,
        _ => return None,
    })
}
