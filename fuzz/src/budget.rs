//! The budgets every fuzz input must keep, on top of each target's own
//! checks: memory, decoder work and wall time per input, from the engine's
//! promise that decoding is linear in the bytes read and its memory bounded
//! by them plus the live index (`format-spec/README.md`, "Decoder
//! budgets"). A breach is a finding like any other: [`run`] panics after
//! the input, naming the budget, or, past a hard cap, the allocator refuses
//! memory and the process aborts (libFuzzer reports both as a crash and
//! keeps the input).
//!
//! - **Memory.** This crate's global allocator counts the heap of the whole
//!   process. [`run`] takes one input at a time (a lock: the replay test runs
//!   targets on several threads) and requires the peak over the heap in use
//!   when it started to stay within [`memory_budget`]: a base per target
//!   plus [`MEMORY_PER_INPUT_BYTE`] per input byte. The base covers the
//!   fixed costs: for the file targets a template store built on first use
//!   and a salvaged store's buffers ([`MEMORY_BASE`]); for the two history
//!   targets also their models, one per batch, which a few KiB of input can
//!   fill with values of up to 4 KiB within their step limits
//!   ([`MEMORY_BASE_HISTORY`]). Beyond [`HARD_CAP_FACTOR`] times the
//!   budget allocations fail, so an input that asks for gigabytes stops at
//!   once.
//! - **Work.** The engine counts, per thread, what could grow faster than
//!   its input (`journalstore::work`): bytes checksummed while resyncing
//!   past damage, segment-id comparisons of manifest decoding, placeholder
//!   items of replay. Each must stay within [`WORK_PER_INPUT_BYTE`] per
//!   input byte plus [`WORK_BASE`]: a target decodes its input a few dozen
//!   times at most (scans, the opens of `open_checked`, salvage), so linear
//!   work stays far below that, and quadratic work on a crafted input of a
//!   few KiB passes it.
//! - **Time.** Wall time within [`TIME_LIMIT`] per input: a backstop for
//!   work the counters do not see, generous enough for a debug build on a
//!   busy machine (libFuzzer's own `-timeout` applies as well).

use std::io::Write;
use std::os::fd::FromRawFd;
use std::sync::atomic::Ordering;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use journalstore::work::{self, Work};

/// Heap an input of `segment_decode`, `manifest_decode` or `corrupt_open`
/// may take whatever its size, in bytes.
pub const MEMORY_BASE: usize = 16 << 20;
/// Heap an input of `ops_model` or `crash_recovery` may take whatever its
/// size: up to 72 batches of six values of up to 4 KiB, and the model after
/// each batch kept (about 70 MiB at worst), with room to spare.
pub const MEMORY_BASE_HISTORY: usize = 256 << 20;
/// Heap an input may take per byte of input.
pub const MEMORY_PER_INPUT_BYTE: usize = 256;
/// Past this multiple of an input's memory budget, allocation fails.
pub const HARD_CAP_FACTOR: usize = 4;
/// Work counted by the engine that any input may cause.
pub const WORK_BASE: u64 = 1 << 20;
/// Work counted by the engine per byte of input.
pub const WORK_PER_INPUT_BYTE: u64 = 128;
/// Wall time any input may take.
pub const TIME_LIMIT: Duration = Duration::from_secs(60);

#[path = "../../tests/common/counting_alloc.rs"]
mod counting_alloc;

use counting_alloc::{Counting, CAP as HARD_CAP, CURRENT, ON_REFUSED, PEAK};

#[global_allocator]
static ALLOCATOR: Counting = Counting;

/// One input at a time: the heap is counted for the whole process.
static ONE_AT_A_TIME: Mutex<()> = Mutex::new(());

/// What the input being run is called, for the message of a refused
/// allocation (which cannot unwind to a caller that knows).
static LABEL: Mutex<String> = Mutex::new(String::new());

/// Says why an allocation is about to fail, without allocating (this runs
/// inside the allocator): a fixed text and the number, written straight to
/// standard error.
fn hard_cap_message(wanted: usize) {
    let mut digits = [0u8; 20];
    let mut at = digits.len();
    let mut n = wanted;
    loop {
        at -= 1;
        digits[at] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    // SAFETY: descriptor 2 stays open for the life of the process, and
    // `ManuallyDrop` keeps this handle from closing it. A raw write takes
    // no lock: the allocation being refused may come from code that holds
    // `std::io::stderr()`.
    let err = std::mem::ManuallyDrop::new(unsafe { std::fs::File::from_raw_fd(2) });
    let mut err: &std::fs::File = &err;
    let _ = err.write_all(b"\njournalstore-fuzz: memory budget breached: the heap would reach ");
    let _ = err.write_all(&digits[at..]);
    let _ = err.write_all(b" bytes, past the hard cap for this input; allocation refused: ");
    // `try_lock`: the label is replaced under the lock between inputs, when
    // no allocation is refused; this must not wait on it either way.
    if let Ok(label) = LABEL.try_lock() {
        let _ = err.write_all(label.as_bytes());
    }
    let _ = err.write_all(b"\n");
}

/// What one input cost.
#[derive(Clone, Copy, Debug)]
pub struct Cost {
    /// Highest heap over what was in use when the input started, in bytes.
    pub peak_heap: usize,
    /// The engine's work counters for the input.
    pub work: Work,
    /// Wall time.
    pub elapsed: Duration,
}

/// The memory budget of an input of `len` bytes to `target`.
pub fn memory_budget(target: &str, len: usize) -> usize {
    let base = match target {
        "ops_model" | "crash_recovery" => MEMORY_BASE_HISTORY,
        _ => MEMORY_BASE,
    };
    base.saturating_add(MEMORY_PER_INPUT_BYTE.saturating_mul(len))
}

/// The budget of each work counter for an input of `len` bytes.
pub fn work_budget(len: usize) -> u64 {
    WORK_BASE.saturating_add(WORK_PER_INPUT_BYTE.saturating_mul(len as u64))
}

/// Runs `target` (the target called `name`) on `data` under the budgets;
/// panics, after the input, naming each budget it broke.
/// `FUZZ_BUDGET_REPORT=1` prints every input's cost to standard error.
pub fn run(name: &str, data: &[u8], target: fn(&[u8])) -> Cost {
    run_labelled(name, name, data, target)
}

/// [`run`], with `label` (e.g. the input's file) in the message of an
/// allocation refused at the hard cap.
pub fn run_labelled(name: &str, label: &str, data: &[u8], target: fn(&[u8])) -> Cost {
    let _one = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let _ = ON_REFUSED.set(hard_cap_message);
    {
        let mut current = LABEL.lock().unwrap_or_else(|e| e.into_inner());
        current.clear();
        current.push_str(label);
    }
    let budget = memory_budget(name, data.len());
    let base = CURRENT.load(Ordering::Relaxed);
    PEAK.store(base, Ordering::Relaxed);
    HARD_CAP.store(
        base.saturating_add(budget.saturating_mul(HARD_CAP_FACTOR)),
        Ordering::Relaxed,
    );
    work::take();
    let start = Instant::now();
    let outcome = std::panic::catch_unwind(|| target(data));
    let cost = Cost {
        elapsed: start.elapsed(),
        work: work::take(),
        peak_heap: PEAK.load(Ordering::Relaxed).saturating_sub(base),
    };
    HARD_CAP.store(usize::MAX, Ordering::Relaxed);
    if let Err(panic) = outcome {
        std::panic::resume_unwind(panic);
    }
    if std::env::var_os("FUZZ_BUDGET_REPORT").is_some() {
        eprintln!("{name}: {} bytes: {cost:?}", data.len());
    }
    let mut breaches = Vec::new();
    if cost.peak_heap > budget {
        breaches.push(format!(
            "heap grew by {} bytes, budget {budget}",
            cost.peak_heap
        ));
    }
    let work_budget = work_budget(data.len());
    let counters = [
        ("bytes checksummed resyncing", cost.work.resync_crc_bytes),
        ("manifest id comparisons", cost.work.manifest_id_comparisons),
        ("replay placeholder items", cost.work.placeholder_items),
    ];
    for (what, count) in counters {
        if count > work_budget {
            breaches.push(format!("{what}: {count}, budget {work_budget}"));
        }
    }
    if cost.elapsed > TIME_LIMIT {
        breaches.push(format!("took {:?}, budget {TIME_LIMIT:?}", cost.elapsed));
    }
    assert!(
        breaches.is_empty(),
        "{name}: an input of {} bytes broke its budgets: {}",
        data.len(),
        breaches.join("; ")
    );
    cost
}
