//! Text rendering of a [`Report`], for a terminal.
//!
//! Journal ids print as quoted text when they are printable UTF-8 and as
//! `0x…` hex otherwise (the engine's `DisplayId`); text values are quoted
//! with escapes, so no byte from a store can drive the terminal.

use std::io::{self, Write};

use journalstore::DisplayId;

use crate::report::{
    Id, IndexReport, ItemOut, JournalOut, Journals, Manifests, ProblemOut, Report, Salvage,
    SegmentOut, Segments, StatusOut, Summary, Transfer, ValueOut, Verify,
};

/// How values are shown in text.
#[derive(Clone, Copy, Debug, Default)]
pub struct TextOptions {
    /// Show long values whole (else cut at [`SHOWN_BYTES`]).
    pub full: bool,
}

/// Bytes of a value shown in text without `--full`.
pub const SHOWN_BYTES: usize = 128;

pub fn render(w: &mut dyn Write, report: &Report, opts: TextOptions) -> io::Result<()> {
    match report {
        Report::Summary(r) => summary(w, r),
        Report::Segments(r) => segments(w, r),
        Report::Manifest(r) => manifests(w, r),
        Report::Journal(r) => journal(w, r, opts),
        Report::Verify(r) => verify(w, r),
        Report::Salvage(r) => salvage(w, r),
        Report::Journals(r) => journals(w, r),
        Report::Transfer(r) => transfer(w, r),
        Report::Index(r) => index(w, r),
    }
}

/// An id as the engine prints it: quoted text, or `0x` hex.
fn id(id: &Id) -> String {
    match &id.utf8 {
        Some(s) => DisplayId(s.as_bytes()).to_string(),
        None => format!("0x{}", id.hex),
    }
}

fn opt<T: std::fmt::Display>(v: &Option<T>) -> String {
    v.as_ref().map_or_else(|| "?".to_owned(), |v| v.to_string())
}

/// A value on one line, cut after [`SHOWN_BYTES`] bytes unless `full`.
fn value_cut(v: &ValueOut, full: bool) -> String {
    let cut = |s: &str, max: usize| -> (String, bool) {
        if full || s.len() <= max {
            return (s.to_owned(), false);
        }
        let mut end = max;
        while !s.is_char_boundary(end) {
            end -= 1;
        }
        (s[..end].to_owned(), true)
    };
    let (shown, more) = match v.encoding {
        "utf8" => {
            let (t, more) = cut(&v.value, SHOWN_BYTES);
            (format!("{t:?}"), more)
        }
        _ => {
            let (t, more) = cut(&v.value, SHOWN_BYTES * 2);
            (format!("0x{t}"), more)
        }
    };
    if more {
        format!("{shown}... (cut; --full shows all)")
    } else {
        shown
    }
}

/// A hex value as a hexdump (offset, bytes, printable text), indented;
/// cut after [`SHOWN_BYTES`] bytes unless `full`.
fn hexdump(v: &ValueOut, full: bool) -> String {
    let bytes = hex::decode(&v.value).unwrap_or_default();
    let shown = if full {
        &bytes[..]
    } else {
        &bytes[..bytes.len().min(SHOWN_BYTES)]
    };
    let cfg = pretty_hex::HexConfig {
        title: false,
        width: 16,
        group: 8,
        ..pretty_hex::HexConfig::default()
    };
    let mut out = String::new();
    for line in pretty_hex::config_hex(&shown, cfg).lines() {
        out.push_str("    ");
        out.push_str(line);
        out.push('\n');
    }
    if shown.len() < bytes.len() {
        out.push_str(&format!(
            "    ... {} more bytes (--full shows all)\n",
            bytes.len() - shown.len()
        ));
    }
    out
}

/// `FILE @ OFFSET`, or only `FILE` for a problem with no place in a file:
/// offset 0 of a path that is not a regular file (a directory, a file
/// that is missing).
fn problem_line(p: &ProblemOut) -> String {
    let mut s = if p.offset == 0 && !std::path::Path::new(&p.file).is_file() {
        p.file.clone()
    } else {
        format!("{} @ {}", p.file, p.offset)
    };
    if let Some(j) = &p.journal {
        s += &format!(" [journal {}]", id(j));
    }
    s += &format!(": {}", p.reason);
    if p.repaired_at_open {
        s += " (Store::open repairs this)";
    }
    s
}

fn problems(w: &mut dyn Write, problems: &[ProblemOut]) -> io::Result<()> {
    for p in problems {
        writeln!(w, "PROBLEM  {}", problem_line(p))?;
    }
    Ok(())
}

fn summary(w: &mut dyn Write, r: &Summary) -> io::Result<()> {
    writeln!(w, "store        {}", r.dir)?;
    if r.source != "replay" {
        writeln!(
            w,
            "note         the store does not open; figures below come from a scan of its intact records"
        )?;
    }
    let segment_versions = if r.segment_versions.is_empty() {
        "-".to_owned()
    } else {
        r.segment_versions
            .iter()
            .map(u32::to_string)
            .collect::<Vec<_>>()
            .join(", ")
    };
    writeln!(
        w,
        "format       version {} (segments: {segment_versions}; manifest layout {})",
        opt(&r.format_version),
        opt(&r.manifest_version)
    )?;
    writeln!(
        w,
        "generation   {} (next segment id {}, lsn floor {})",
        opt(&r.generation),
        opt(&r.next_segment_id),
        opt(&r.lsn_floor)
    )?;
    writeln!(w, "journals     {}", r.journals)?;
    writeln!(
        w,
        "entries      {} ({} bytes; metadata {} bytes)",
        r.entries, r.entry_bytes, r.metadata_bytes
    )?;
    writeln!(
        w,
        "lsn          oldest {}, newest {}",
        opt(&r.oldest_lsn),
        opt(&r.newest_lsn)
    )?;
    if r.torn_tail == Some(true) {
        writeln!(
            w,
            "torn tail    yes: the active segment ends in bytes that are not records"
        )?;
    }
    writeln!(w, "segments     {}", r.segments.len())?;
    writeln!(
        w,
        "  {:>8}  {:<17}  {:<8}  {:>7}  {:>10}  {:>10}  {:>10}  {:>6}",
        "id", "file", "state", "version", "size", "written", "live", "live%"
    )?;
    for s in &r.segments {
        writeln!(
            w,
            "  {:>8}  {:<17}  {:<8}  {:>7}  {:>10}  {:>10}  {:>10}  {:>6}",
            s.id,
            s.file,
            s.state,
            opt(&s.version),
            s.size,
            opt(&s.written),
            opt(&s.live_bytes),
            s.live_ratio
                .map_or_else(|| "-".to_owned(), |r| format!("{:.1}%", r * 100.0))
        )?;
    }
    if r.segments.iter().any(|s| s.state == "unlisted") {
        writeln!(
            w,
            "  (unlisted: a file the manifest does not name: a segment that only pinned snapshots of the open store still read, freed when they drop, or an orphan of a crash that the next open removes)"
        )?;
    }
    status(w, &r.status)?;
    problems(w, &r.problems)
}

/// A duration in milliseconds, rounded for a reader: "50 ms", "2.4 s",
/// "42 s", "17 min", "5 h", "3 d".
fn duration(ms: u64) -> String {
    match ms {
        0..1000 => format!("{ms} ms"),
        1000..10_000 => format!("{:.1} s", ms as f64 / 1000.0),
        10_000..120_000 => format!("{} s", ms / 1000),
        120_000..7_200_000 => format!("{} min", ms / 60_000),
        7_200_000..172_800_000 => format!("{} h", ms / 3_600_000),
        _ => format!("{} d", ms / 86_400_000),
    }
}

/// The `STATUS` block of `summary`: who wrote it and when, the figures it
/// holds, and the pinned snapshots (what this tool cannot see otherwise).
fn status(w: &mut dyn Write, s: &StatusOut) -> io::Result<()> {
    let (Some(pid), Some(age), Some(interval)) = (s.pid, s.age_ms, s.interval_ms) else {
        return match &s.error {
            Some(e) => writeln!(w, "status       unreadable: {e}"),
            None => writeln!(
                w,
                "status       none: no STATUS file (it is written by an open store with Options::status_interval set; pinned snapshots are unknown)"
            ),
        };
    };
    let when = format!("{} ago by pid {pid}", duration(age));
    let stopped = s.writes_stopped == Some(true);
    match (s.state, s.stale) {
        ("open", false) => writeln!(
            w,
            "status       store open: written {when} (rewritten every {})",
            duration(interval)
        )?,
        ("open", true) => writeln!(
            w,
            "status       STALE: says the store is open, but was written {when} and should be rewritten every {}: that process died or hangs",
            duration(interval)
        )?,
        _ if stopped => writeln!(
            w,
            "status       store closed after writes had stopped (a write or sync failed): written at close {when}"
        )?,
        _ => writeln!(w, "status       store closed cleanly: written at close {when}")?,
    }
    if stopped && s.state == "open" {
        writeln!(
            w,
            "             writes stopped: a write or sync failed; the store refuses writes until reopened"
        )?;
    }
    writeln!(
        w,
        "             then: generation {}, lsn {}, segments {}, on disk {} bytes, live {} bytes, journals {}",
        opt(&s.generation),
        opt(&s.lsn),
        opt(&s.segments),
        opt(&s.bytes_on_disk),
        opt(&s.live_bytes),
        opt(&s.journals)
    )?;
    let pins = s.pinned_snapshots.unwrap_or(0);
    let plural = if pins == 1 { "" } else { "s" };
    match (s.oldest_pinned_generation, s.oldest_pinned_age_ms) {
        (Some(generation), Some(held)) if pins > 0 => writeln!(
            w,
            "pinned       {pins} snapshot{plural}; the oldest pins generation {generation} and was {} old then; {} bytes on disk kept only for snapshots",
            duration(held),
            opt(&s.pinned_only_bytes)
        ),
        _ => writeln!(w, "pinned       {pins} snapshot{plural}"),
    }
}

fn segment(w: &mut dyn Write, s: &SegmentOut) -> io::Result<()> {
    let state = match (s.state, s.sealed_len) {
        ("sealed", Some(len)) => format!("sealed at {len}"),
        (state, _) => state.to_owned(),
    };
    writeln!(w, "{}  {state}, {} bytes", s.file, s.size)?;
    match (&s.header, &s.header_error) {
        (Some(h), _) => writeln!(
            w,
            "  header   version {}, header_len {}, segment_id {}, capacity {}, base_lsn {}, crc {:#010x} ok",
            h.version, h.header_len, h.segment_id, h.capacity, h.base_lsn, h.crc
        )?,
        (None, Some(e)) => writeln!(w, "  header   unusable: {e}")?,
        (None, None) => writeln!(w, "  header   not read")?,
    }
    if s.scan_from > 64 {
        writeln!(w, "  (scan from offset {})", s.scan_from)?;
    }
    for item in &s.items {
        match item {
            ItemOut::Record {
                offset,
                lsn,
                payload_len,
                synced_through,
                op_count,
                checksums,
                ops,
                op_error,
                ..
            } => {
                writeln!(
                    w,
                    "  @{offset:<8} record lsn {lsn}, {op_count} ops, payload {payload_len}, synced_through {synced_through}, checksums {checksums}"
                )?;
                for op in ops {
                    let index = op.index.map_or_else(String::new, |i| format!(" index {i}"));
                    let bounds = format!(" -> {}..{}", op.first, op.end);
                    let val = if matches!(op.kind, "append" | "set_metadata") {
                        format!(
                            ", {} bytes, crc {}",
                            op.value_len,
                            if op.value_crc_ok { "ok" } else { "BAD" }
                        )
                    } else {
                        String::new()
                    };
                    writeln!(
                        w,
                        "      @{:<8} {:<14} {}{index}{bounds}{val}",
                        op.offset,
                        op.kind,
                        id(&op.journal)
                    )?;
                }
                if let Some(e) = op_error {
                    writeln!(
                        w,
                        "      @{:<8} UNDECODABLE operation: {}",
                        e.offset, e.reason
                    )?;
                }
            }
            ItemOut::Damaged { offset, reason } => writeln!(w, "  @{offset:<8} DAMAGED: {reason}")?,
            ItemOut::SyncMark {
                offset,
                lsn,
                synced_through,
            } => writeln!(
                w,
                "  @{offset:<8} sync mark after lsn {lsn}: synced through {synced_through}"
            )?,
            ItemOut::End { offset } => {
                if s.truncated {
                    writeln!(w, "  ... (more records; --limit reached)")?;
                }
                writeln!(w, "  @{offset:<8} end of data")?
            }
        }
    }
    if let Some(at) = s.tail_nonzero_at {
        writeln!(w, "  @{at:<8} non-zero bytes after the end of the data")?;
    }
    Ok(())
}

fn segments(w: &mut dyn Write, r: &Segments) -> io::Result<()> {
    for (i, s) in r.segments.iter().enumerate() {
        if i > 0 {
            writeln!(w)?;
        }
        segment(w, s)?;
    }
    if !r.problems.is_empty() {
        writeln!(w)?;
    }
    problems(w, &r.problems)
}

fn manifests(w: &mut dyn Write, r: &Manifests) -> io::Result<()> {
    for (i, m) in r.manifests.iter().enumerate() {
        if i > 0 {
            writeln!(w)?;
        }
        let role = match m.role {
            "current" => "current generation",
            "pending" => "pending: an interrupted swap, never read by the engine",
            _ => "file",
        };
        writeln!(w, "{}  ({role})", m.file)?;
        if let Some(e) = &m.error {
            writeln!(w, "  unreadable: {e}")?;
        }
        if let Some(b) = &m.manifest {
            writeln!(
                w,
                "  version {}, generation {}, next_segment_id {}, lsn_floor {}, {} segments",
                b.version,
                b.generation,
                b.next_segment_id,
                b.lsn_floor,
                b.segments.len()
            )?;
            for s in &b.segments {
                match s.sealed_len {
                    Some(len) => writeln!(w, "  {:>8}  {}  sealed at {len}", s.id, s.file)?,
                    None => writeln!(w, "  {:>8}  {}  active", s.id, s.file)?,
                }
            }
        }
    }
    if !r.problems.is_empty() {
        writeln!(w)?;
    }
    problems(w, &r.problems)
}

fn journal(w: &mut dyn Write, r: &JournalOut, opts: TextOptions) -> io::Result<()> {
    let show = |v: &ValueOut| -> String {
        if r.hexdump && v.encoding == "hex" {
            format!("({} bytes)\n{}", v.len, hexdump(v, opts.full).trim_end())
        } else {
            format!("{} ({} bytes)", value_cut(v, opts.full), v.len)
        }
    };
    writeln!(w, "journal   {}", id(&r.journal))?;
    if r.source != "replay" {
        writeln!(
            w,
            "note      the store does not open; this is the journal as a scan of its intact records rebuilds it"
        )?;
    }
    if r.found {
        writeln!(
            w,
            "bounds    {}..{} ({} entries)",
            opt(&r.first_index),
            opt(&r.end_index),
            opt(&r.len)
        )?;
        match (&r.metadata, &r.metadata_error) {
            (Some(m), _) => writeln!(w, "metadata  {}", show(m))?,
            (None, Some(err)) => writeln!(w, "metadata  UNREADABLE: {err}")?,
            (None, None) => writeln!(w, "metadata  absent (never set, or cleared)")?,
        }
        for e in &r.entries {
            match (&e.value, &e.error) {
                (Some(v), _) => writeln!(w, "[{}] {}", e.index, show(v))?,
                (None, Some(err)) => writeln!(w, "[{}] UNREADABLE: {err}", e.index)?,
                (None, None) => writeln!(w, "[{}] ?", e.index)?,
            }
        }
    }
    if !r.problems.is_empty() {
        writeln!(w)?;
    }
    problems(w, &r.problems)
}

fn index(w: &mut dyn Write, r: &IndexReport) -> io::Result<()> {
    writeln!(
        w,
        "store    {}: manifest generation {}, {} index checkpoint files",
        r.dir,
        opt(&r.generation),
        r.checkpoints.len()
    )?;
    for c in &r.checkpoints {
        writeln!(w, "{}", c.file)?;
        if let Some(e) = &c.error {
            writeln!(
                w,
                "  unusable: {e} (open ignores it and replays the whole log)"
            )?;
            continue;
        }
        let segments: Vec<String> = c
            .segments
            .iter()
            .flatten()
            .map(|s| match s.sealed_len {
                Some(len) => format!("{} (sealed at {len})", s.id),
                None => format!("{} (active)", s.id),
            })
            .collect();
        writeln!(
            w,
            "  generation {}, last lsn {}, active_end {}",
            c.generation,
            opt(&c.last_lsn),
            opt(&c.active_end)
        )?;
        writeln!(w, "  segments {}", segments.join(", "))?;
        writeln!(
            w,
            "  journals {}, entries {}",
            opt(&c.journals),
            opt(&c.entries)
        )?;
        let continued = match c.continued {
            Some(true) => "yes: open can start from it",
            Some(false) => "no: stale, open ignores it",
            None => "unknown (the manifest does not decode)",
        };
        writeln!(w, "  continued by the manifest: {continued}")?;
    }
    problems(w, &r.problems)
}

fn verify(w: &mut dyn Write, r: &Verify) -> io::Result<()> {
    writeln!(
        w,
        "checked  {}: manifest generation {}, {} segment files, {} records, {} ops, {} journals, {} values",
        r.dir,
        opt(&r.generation),
        r.segments,
        r.records,
        r.ops,
        r.journals,
        r.values
    )?;
    problems(w, &r.problems)?;
    for n in &r.notes {
        writeln!(w, "NOTE     {}", problem_line(n))?;
    }
    if r.attempts > 1 {
        writeln!(
            w,
            "ran      {} times (the store changed while it was read, or damage was checked again)",
            r.attempts
        )?;
    }
    if r.ok {
        writeln!(
            w,
            "OK: every checksum and cross-reference holds ({} notes)",
            r.notes.len()
        )
    } else {
        writeln!(w, "FAILED: {} problems", r.problems.len())
    }
}

fn salvage(w: &mut dyn Write, r: &Salvage) -> io::Result<()> {
    if r.written {
        writeln!(
            w,
            "salvaged {} -> {}: {} intact records replayed, {} journals, {} entries",
            r.dir, r.out, r.records, r.journals, r.entries
        )?;
    } else {
        writeln!(
            w,
            "salvage of {} -> {} did not run to the end",
            r.dir, r.out
        )?;
    }
    for f in &r.unlisted {
        writeln!(w, "skipped  {f}: not listed in the manifest")?;
    }
    for t in &r.torn {
        writeln!(
            w,
            "torn     {} @ {}: record after a torn tail, left out (recovery drops it too)",
            t.file, t.offset
        )?;
    }
    for l in &r.lost {
        writeln!(
            w,
            "lost     journal {}: {} entries from index {}",
            id(&l.journal),
            l.count,
            l.from_index
        )?;
    }
    if let Some(e) = &r.manifest_error {
        writeln!(
            w,
            "manifest unusable: {e}; every segment file was read whole"
        )?;
    }
    for m in &r.missing {
        writeln!(w, "missing  {m}: listed in the manifest, not readable")?;
    }
    for l in &r.lost_ranges {
        let place = match l.offset {
            Some(o) => format!("{} @ {o}", l.file),
            None => l.file.clone(),
        };
        let lsns = match (l.first_lsn, l.last_lsn) {
            (Some(a), Some(b)) if a > b => "no LSN of its own".to_owned(),
            (Some(a), Some(b)) if a == b => format!("LSN {a}"),
            (Some(a), Some(b)) => format!("LSNs {a}..={b}"),
            (Some(a), None) => format!("LSNs from {a} (upper bound unknown)"),
            (None, Some(b)) => format!("LSNs up to {b} (lower bound unknown)"),
            (None, None) => "LSNs unknown".to_owned(),
        };
        let journals = match &l.journals {
            Some(ids) => ids.iter().map(id).collect::<Vec<_>>().join(", "),
            None => "unknown".to_owned(),
        };
        writeln!(
            w,
            "unread   {place}: {lsns}; journals {journals} ({})",
            l.reason
        )?;
    }
    if r.all_suspect {
        writeln!(
            w,
            "suspect  every journal: a lost batch's journals are unknown (journals it alone created cannot be named)"
        )?;
    }
    for s in &r.suspect {
        writeln!(
            w,
            "suspect  journal {}{}: {}",
            id(&s.journal),
            if s.dropped { " (dropped)" } else { " (kept)" },
            s.reasons.join("; ")
        )?;
    }
    problems(w, &r.problems)?;
    if r.ok {
        writeln!(w, "OK: nothing lost")
    } else if r.written {
        writeln!(
            w,
            "INCOMPLETE: the salvaged store may differ from the last good state (see above)"
        )
    } else {
        writeln!(w, "FAILED")
    }
}

/// Exact bytes with a human-readable size next to them: `1048576 (1.0 MiB)`.
pub fn size(bytes: u64) -> String {
    if bytes < 1024 {
        format!("{bytes} B")
    } else {
        format!("{bytes} ({})", bytesize::ByteSize(bytes).display().iec())
    }
}

fn journals(w: &mut dyn Write, r: &Journals) -> io::Result<()> {
    writeln!(
        w,
        "{:<32} {:>12} {:>12} {:>10} {:>28} {:>10}",
        "journal", "first", "end", "entries", "entry bytes", "metadata"
    )?;
    for j in &r.journals {
        writeln!(
            w,
            "{:<32} {:>12} {:>12} {:>10} {:>28} {:>10}",
            id(&j.id),
            j.first_index,
            j.end_index,
            j.entries,
            size(j.entry_bytes),
            j.metadata_bytes
                .map_or_else(|| "-".to_owned(), |m| format!("{m} B"))
        )?;
    }
    let shown = if r.journals.len() as u64 == r.matched {
        String::new()
    } else {
        format!(", the top {} by {} shown", r.journals.len(), r.order)
    };
    writeln!(w, "{} journals{shown}", r.matched)?;
    problems(w, &r.problems)
}

fn transfer(w: &mut dyn Write, r: &Transfer) -> io::Result<()> {
    let (verb, from, to) = match r.command {
        "export" => ("exported", &r.dir, &r.file),
        _ => ("imported", &r.file, &r.dir),
    };
    writeln!(
        w,
        "{verb} {from} -> {to}: {} journals, {} entries, {} of entries, {} batches",
        r.journals,
        r.entries,
        size(r.bytes),
        r.batches
    )?;
    problems(w, &r.problems)
}

#[cfg(test)]
mod tests {
    use super::duration;

    /// Ages print in a unit a reader takes in at a glance.
    #[test]
    fn durations_are_rounded_for_a_reader() {
        assert_eq!(duration(0), "0 ms");
        assert_eq!(duration(50), "50 ms");
        assert_eq!(duration(2_449), "2.4 s");
        assert_eq!(duration(42_000), "42 s");
        assert_eq!(duration(17 * 60_000 + 5), "17 min");
        assert_eq!(duration(5 * 3_600_000), "5 h");
        assert_eq!(duration(3 * 86_400_000), "3 d");
        assert_eq!(duration(u64::MAX), format!("{} d", u64::MAX / 86_400_000));
    }
}
