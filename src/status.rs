//! The advisory status file: the open store's [`Stats`] as `key=value`
//! text lines in `STATUS`, for other processes (`journal-dump summary`, a
//! monitoring script) that cannot see this process's memory, pinned
//! snapshots above all. Like RocksDB's periodic statistics dump, it is
//! rewritten every [`Options::status_interval`](crate::Options), and once at
//! open and at close.
//!
//! Both sides of the file live here: the store writes it ([`render`],
//! [`write()`]) and other processes read it ([`read_status`], [`parse`],
//! [`StatusInfo`]; public as `journalstore::inspect::*`). The module
//! depends on the [`Stats`] value only, not on the store or the inspection
//! code, so either can use it.
//!
//! Invariants:
//! - It is advisory. Nothing the engine does depends on it: recovery never
//!   reads it and acts only on `MANIFEST`, `MANIFEST.tmp`, `LOCK` and
//!   segment files, so `STATUS` and `STATUS.tmp` are left alone at open;
//!   checkpoints copy only the segments and manifest they list.
//! - Writing it never affects durability and never stops writes: it is
//!   written to `STATUS.tmp` and renamed over `STATUS` (a reader sees the
//!   old file or the new one, never a mix), without `fsync`, and any error
//!   is ignored. After a power loss the file may be empty or cut short;
//!   [`parse`] then reports `Corruption`, and the next write replaces it.
//! - Its figures are one [`Stats`], taken at one point under the writer's
//!   lock: a file never pairs the LSN of one moment with the generation,
//!   segments or pins of a later one.
//! - It is written only while the store's directory lock is held (at open,
//!   by the status thread, at close before the lock is released), so one
//!   writer at a time touches `STATUS.tmp`.
//!
//! The format (version 1) is in `format-spec/README.md`, section 12.

use std::io;
use std::path::Path;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crate::error::{Error, Result};
use crate::io::{FileSystem, OpenMode};
use crate::stats::Stats;

/// Name of the status file in the store directory.
pub(crate) const STATUS_FILE: &str = "STATUS";

/// Name the status file is written under before its rename.
pub(crate) const STATUS_TMP_FILE: &str = "STATUS.tmp";

/// Version of the status file's format this build writes and reads.
pub(crate) const STATUS_VERSION: u32 = 1;

/// Largest status file [`read_status`] reads: version 1
/// writes well under 1 KiB; anything this long is not a status file.
pub(crate) const MAX_STATUS_FILE_LEN: u64 = 64 << 10;

/// What the writer knows besides [`Stats`].
pub(crate) struct Context {
    /// How often the file is rewritten while the store is open.
    pub interval: Duration,
    /// `false` for the last write, at close.
    pub open: bool,
    /// Whether an earlier write or sync failed (the store refuses writes).
    pub writes_stopped: bool,
}

/// Milliseconds since the Unix epoch (0 for a clock before it).
pub(crate) fn unix_ms(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

/// The file's text for `stats`.
pub(crate) fn render(stats: &Stats, cx: &Context, now: SystemTime) -> String {
    let ms = |d: Duration| u64::try_from(d.as_millis()).unwrap_or(u64::MAX);
    let opt = |v: Option<u64>| v.map_or_else(|| "none".to_owned(), |v| v.to_string());
    let lines: [(&str, String); 17] = [
        ("version", STATUS_VERSION.to_string()),
        ("pid", std::process::id().to_string()),
        ("written_unix_ms", unix_ms(now).to_string()),
        ("interval_ms", ms(cx.interval).to_string()),
        ("open", cx.open.to_string()),
        ("writes_stopped", cx.writes_stopped.to_string()),
        ("generation", stats.generation.to_string()),
        ("lsn", stats.lsn.to_string()),
        ("segments", stats.segments.to_string()),
        ("bytes_on_disk", stats.bytes_on_disk.to_string()),
        ("bytes_written", stats.bytes_written.to_string()),
        ("live_bytes", stats.live_bytes.to_string()),
        ("journals", stats.journals.to_string()),
        ("pinned_snapshots", stats.pinned_snapshots.to_string()),
        (
            "oldest_pinned_generation",
            opt(stats.oldest_pinned_generation),
        ),
        ("oldest_pinned_age_ms", opt(stats.oldest_pinned_age.map(ms))),
        ("pinned_only_bytes", stats.pinned_only_bytes.to_string()),
    ];
    let mut out = String::from(
        "# journalstore status: advisory figures of the store, rewritten while it is open\n",
    );
    for (key, value) in lines {
        out.push_str(key);
        out.push('=');
        out.push_str(&value);
        out.push('\n');
    }
    out
}

/// Replaces `dir/STATUS` by `text`: written to `STATUS.tmp` (a leftover of
/// an interrupted write is removed first), then renamed. No sync: see the
/// module's invariants. On failure the temporary file is removed if it can be.
pub(crate) fn write(fs: &dyn FileSystem, dir: &Path, text: &str) -> io::Result<()> {
    let tmp = dir.join(STATUS_TMP_FILE);
    let file = match fs.open(&tmp, OpenMode::CreateNew) {
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {
            fs.remove_file(&tmp)?;
            fs.open(&tmp, OpenMode::CreateNew)?
        }
        other => other?,
    };
    let written = file.write_at(0, text.as_bytes());
    drop(file);
    let result = written.and_then(|()| fs.rename(&tmp, &dir.join(STATUS_FILE)));
    if result.is_err() {
        let _ = fs.remove_file(&tmp);
    }
    result
}

/// Decodes a status file's bytes; `path` names it in errors.
///
/// Lines are `key=value`; empty lines and lines starting with `#` are
/// skipped, unknown keys are ignored (a later version may add some), every
/// key of version 1 must be there exactly once, and the file must end with
/// a newline (a file cut short by a power loss is refused, not misread).
pub(crate) fn parse(bytes: &[u8], path: &Path) -> Result<StatusInfo> {
    let bad = |offset: usize, reason: String| Error::corruption(path, offset as u64, reason);
    let text = std::str::from_utf8(bytes)
        .map_err(|e| bad(e.valid_up_to(), "status file is not UTF-8 text".into()))?;
    if !text.ends_with('\n') {
        return Err(bad(
            text.len(),
            "status file does not end with a newline (cut short?)".into(),
        ));
    }
    let mut fields: Vec<(&str, &str, usize)> = Vec::new();
    let mut offset = 0;
    for line in text.split_inclusive('\n') {
        let at = offset;
        offset += line.len();
        let line = line.trim_end_matches('\n').trim_end_matches('\r');
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let Some((key, value)) = line.split_once('=') else {
            return Err(bad(at, format!("line {line:?} is not key=value")));
        };
        let key_ok = !key.is_empty()
            && key
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_');
        if !key_ok {
            return Err(bad(at, format!("{key:?} is not a status key")));
        }
        if fields.iter().any(|(k, _, _)| *k == key) {
            return Err(bad(at, format!("key {key:?} appears twice")));
        }
        fields.push((key, value, at));
    }
    let field = |key: &str| -> Result<(&str, usize)> {
        fields
            .iter()
            .find(|(k, _, _)| *k == key)
            .map(|&(_, v, at)| (v, at))
            .ok_or_else(|| bad(text.len(), format!("key {key:?} is missing")))
    };
    let number = |key: &str| -> Result<u64> {
        let (v, at) = field(key)?;
        v.parse()
            .map_err(|_| bad(at, format!("{key}={v:?} is not a number")))
    };
    let optional = |key: &str| -> Result<Option<u64>> {
        match field(key)? {
            ("none", _) => Ok(None),
            _ => number(key).map(Some),
        }
    };
    let flag = |key: &str| -> Result<bool> {
        match field(key)? {
            ("true", _) => Ok(true),
            ("false", _) => Ok(false),
            (v, at) => Err(bad(at, format!("{key}={v:?} is not true or false"))),
        }
    };
    // The version first: a later version may change any other key.
    let (v, at) = field("version")?;
    let version: u32 = v
        .parse()
        .map_err(|_| bad(at, format!("version={v:?} is not a number")))?;
    if version != STATUS_VERSION {
        return Err(Error::UnsupportedVersion {
            path: path.to_owned(),
            found: version,
            supported: STATUS_VERSION,
        });
    }
    let (pid, at) = field("pid")?;
    let pid = pid
        .parse()
        .map_err(|_| bad(at, format!("pid={pid:?} is not a process id")))?;
    Ok(StatusInfo {
        version,
        pid,
        written_unix_ms: number("written_unix_ms")?,
        interval_ms: number("interval_ms")?,
        open: flag("open")?,
        writes_stopped: flag("writes_stopped")?,
        generation: number("generation")?,
        lsn: number("lsn")?,
        segments: number("segments")?,
        bytes_on_disk: number("bytes_on_disk")?,
        bytes_written: number("bytes_written")?,
        live_bytes: number("live_bytes")?,
        journals: number("journals")?,
        pinned_snapshots: number("pinned_snapshots")?,
        oldest_pinned_generation: optional("oldest_pinned_generation")?,
        oldest_pinned_age_ms: optional("oldest_pinned_age_ms")?,
        pinned_only_bytes: number("pinned_only_bytes")?,
    })
}

/// The advisory status file an open store rewrites every
/// [`Options::status_interval`](crate::Options::status_interval), and at open
/// and close: its [`Stats`] as of `written_unix_ms`, for
/// processes that cannot ask it (format: `format-spec/README.md`, section 12).
///
/// It says what the writing process saw, not what is on disk now; a file
/// with `open` true whose age is well past `interval_ms` was left by a
/// process that died or hangs.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
#[cfg_attr(feature = "serde", derive(serde::Serialize))]
pub struct StatusInfo {
    /// Format version of the file (reading accepts only 1).
    pub version: u32,
    /// Id of the process that wrote it.
    pub pid: u32,
    /// When it was written, in milliseconds since the Unix epoch.
    pub written_unix_ms: u64,
    /// How often the writer rewrites it while the store is open.
    pub interval_ms: u64,
    /// `false` when written by `Store::close` (or drop): the last word of
    /// that process.
    pub open: bool,
    /// An earlier write or sync had failed: the store was refusing writes.
    pub writes_stopped: bool,
    /// [`Stats::generation`](crate::Stats::generation).
    pub generation: u64,
    /// [`Stats::lsn`](crate::Stats::lsn).
    pub lsn: u64,
    /// [`Stats::segments`](crate::Stats::segments).
    pub segments: u64,
    /// [`Stats::bytes_on_disk`](crate::Stats::bytes_on_disk).
    pub bytes_on_disk: u64,
    /// [`Stats::bytes_written`](crate::Stats::bytes_written).
    pub bytes_written: u64,
    /// [`Stats::live_bytes`](crate::Stats::live_bytes).
    pub live_bytes: u64,
    /// [`Stats::journals`](crate::Stats::journals).
    pub journals: u64,
    /// [`Stats::pinned_snapshots`](crate::Stats::pinned_snapshots).
    pub pinned_snapshots: u64,
    /// [`Stats::oldest_pinned_generation`](crate::Stats::oldest_pinned_generation).
    pub oldest_pinned_generation: Option<u64>,
    /// [`Stats::oldest_pinned_age`](crate::Stats::oldest_pinned_age) in
    /// milliseconds, as of `written_unix_ms`.
    pub oldest_pinned_age_ms: Option<u64>,
    /// [`Stats::pinned_only_bytes`](crate::Stats::pinned_only_bytes).
    pub pinned_only_bytes: u64,
}

impl StatusInfo {
    /// How long before `now` the file was written (zero if its time is
    /// ahead of `now`).
    pub fn age(&self, now: std::time::SystemTime) -> std::time::Duration {
        let now = unix_ms(now);
        std::time::Duration::from_millis(now.saturating_sub(self.written_unix_ms))
    }
}

/// Reads the status file of the store in `dir`: `Ok(None)` when there is
/// none (the store was never opened by a build that writes it, or with
/// `status_interval: None`), [`Error::Corruption`] when it is not a
/// complete version 1 file (e.g. cut short by a power loss), and
/// [`Error::UnsupportedVersion`] for another version. Never panics.
pub fn read_status(dir: &Path) -> Result<Option<StatusInfo>> {
    let path = dir.join(STATUS_FILE);
    match crate::io::read_bounded(&path, "read status file", MAX_STATUS_FILE_LEN) {
        Ok(bytes) => parse(&bytes, &path).map(Some),
        Err(Error::Io { source, .. }) if source.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stats() -> Stats {
        Stats {
            generation: 7,
            lsn: 1234,
            segments: 3,
            bytes_on_disk: 3 << 20,
            bytes_written: 2 << 20,
            live_bytes: 1 << 20,
            journals: 42,
            pinned_snapshots: 2,
            oldest_pinned_generation: Some(5),
            oldest_pinned_age: Some(Duration::from_millis(1500)),
            pinned_only_bytes: 8192,
            bytes_appended: 0,
            compaction_bytes_copied: 0,
            compaction_runs: 0,
        }
    }

    fn cx(open: bool) -> Context {
        Context {
            interval: Duration::from_secs(10),
            open,
            writes_stopped: false,
        }
    }

    /// What `render` writes, `parse` reads back, field for field.
    #[test]
    fn round_trip() {
        let now = UNIX_EPOCH + Duration::from_millis(1_700_000_000_123);
        let text = render(&stats(), &cx(true), now);
        let info = parse(text.as_bytes(), Path::new("STATUS")).unwrap();
        assert_eq!(info.version, 1);
        assert_eq!(info.pid, std::process::id());
        assert_eq!(info.written_unix_ms, 1_700_000_000_123);
        assert_eq!(info.interval_ms, 10_000);
        assert!(info.open && !info.writes_stopped);
        assert_eq!((info.generation, info.lsn, info.segments), (7, 1234, 3));
        assert_eq!(info.bytes_on_disk, 3 << 20);
        assert_eq!(info.bytes_written, 2 << 20);
        assert_eq!(info.live_bytes, 1 << 20);
        assert_eq!(info.journals, 42);
        assert_eq!(info.pinned_snapshots, 2);
        assert_eq!(info.oldest_pinned_generation, Some(5));
        assert_eq!(info.oldest_pinned_age_ms, Some(1500));
        assert_eq!(info.pinned_only_bytes, 8192);

        let mut none = stats();
        none.pinned_snapshots = 0;
        none.oldest_pinned_generation = None;
        none.oldest_pinned_age = None;
        let text = render(&none, &cx(false), now);
        assert!(text.contains("\noldest_pinned_age_ms=none\n"), "{text}");
        let info = parse(text.as_bytes(), Path::new("STATUS")).unwrap();
        assert!(!info.open);
        assert_eq!(info.oldest_pinned_generation, None);
        assert_eq!(info.oldest_pinned_age_ms, None);
    }

    /// Damaged, cut, foreign or future files are typed errors, never a
    /// panic or a misread; unknown keys and comments are skipped.
    #[test]
    fn bad_files_are_errors() {
        let good = render(&stats(), &cx(true), SystemTime::now());
        let p = Path::new("STATUS");
        let with_extra = format!("{good}# a comment\n\nfuture_key=anything\n");
        assert!(parse(with_extra.as_bytes(), p).is_ok());
        for cut in 0..good.len() {
            let err = parse(&good.as_bytes()[..cut], p).unwrap_err();
            assert!(err.is_corruption(), "cut at {cut}: {err}");
        }
        let cases = [
            good.replace("lsn=1234", "lsn=12x4"),
            good.replace("open=true", "open=yes"),
            good.replace("pinned_snapshots=2", "pinned_snapshots=-2"),
            good.replace("journals=42", "journals"),
            good.replace("journals=42", "Journals=42"),
            good.replace("journals=42", "journals=42\njournals=43"),
            good.replace("pid=", "pid=99999999999999999999"),
            good.replace("version=1", "version=x"),
            "\0\0\0\0\n".to_owned(),
            "\u{ff}\n".to_owned(),
        ];
        for (i, case) in cases.iter().enumerate() {
            let err = parse(case.as_bytes(), p).unwrap_err();
            assert!(err.is_corruption(), "case {i}: {err}");
        }
        assert!(parse(&[0xff, 0xfe, b'\n'], p).unwrap_err().is_corruption());
        let future = good.replace("version=1", "version=2");
        assert!(matches!(
            parse(future.as_bytes(), p),
            Err(Error::UnsupportedVersion { found: 2, .. })
        ));
    }
}
