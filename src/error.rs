//! The one error type of the crate.

use std::fmt;
use std::io;
use std::path::PathBuf;
use std::sync::Arc;

/// Result alias used throughout journalstore.
pub type Result<T> = std::result::Result<T, Error>;

/// Everything that can go wrong, with the context needed to act on it.
///
/// Journal ids are carried as raw bytes; `Display` prints them as UTF-8 when
/// they are, and as hex otherwise.
///
/// `Display` describes this error only, never the error it wraps: that one
/// is [`source`](std::error::Error::source) (the `io::Error` of
/// [`Error::Io`], the original failure of [`Error::WritesStopped`]), as the
/// `std::error::Error` convention asks, so a reporter that walks the chain
/// prints every layer once. [`DisplayChain`] prints the whole chain on one
/// line.
///
/// `Error` is `Clone`, and cloning is cheap: the wrapped errors are shared
/// (`Arc`), and the rest is a path, a journal id or a short text. A clone
/// prints the same, and its `source` is the same object. Group commit hands
/// one failure to every batch of the group this way.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub enum Error {
    /// An operating-system I/O call failed.
    Io {
        /// What the engine was doing ("write segment", "sync manifest", ...).
        op: &'static str,
        /// The file or directory involved.
        path: PathBuf,
        /// The underlying error, shared so that the error can be cloned;
        /// also returned by `source()`.
        source: Arc<io::Error>,
    },
    /// Bytes on disk are not what the engine wrote: a checksum mismatch, a
    /// record that does not decode, a missing file, an inconsistency between
    /// files. Never returned for a torn tail after a crash, which recovery cuts.
    Corruption {
        /// The file that holds the damage.
        path: PathBuf,
        /// Byte offset of the damage in that file.
        offset: u64,
        /// The journal the damaged bytes belong to, when known.
        journal: Option<Vec<u8>>,
        /// What is wrong.
        reason: String,
    },
    /// A file was written by a format version this build does not read.
    UnsupportedVersion {
        /// The file.
        path: PathBuf,
        /// The version found in its header.
        found: u32,
        /// The version this build reads and writes.
        supported: u32,
    },
    /// The store directory is already open (in this process or another).
    Locked {
        /// The lock file.
        path: PathBuf,
    },
    /// A journal id is empty or longer than 255 bytes.
    InvalidJournalId {
        /// The id's length.
        len: usize,
    },
    /// A value is larger than the options allow.
    ValueTooLarge {
        /// The journal it was written to.
        journal: Vec<u8>,
        /// "entry" or "metadata".
        what: &'static str,
        /// Its size in bytes.
        len: u64,
        /// The limit in bytes.
        max: u64,
    },
    /// A batch does not fit in one segment.
    BatchTooLarge {
        /// The encoded size of the batch record.
        len: u64,
        /// The most a segment can hold.
        max: u64,
    },
    /// `append_at` named an index other than the journal's end.
    UnexpectedIndex {
        /// The journal.
        journal: Vec<u8>,
        /// The index the batch asked for.
        expected: u64,
        /// The journal's `end_index` at that point of the batch.
        actual: u64,
    },
    /// An index past the format's limit (`record::MAX_INDEX`): a trim or
    /// truncate to it, or an append to a journal whose end is there. Any
    /// other index is valid for a trim or truncate (see
    /// [`WriteBatch::trim_prefix`](crate::WriteBatch::trim_prefix)).
    InvalidRange {
        /// The journal.
        journal: Vec<u8>,
        /// "trim_prefix", "truncate" or "append".
        op: &'static str,
        /// The index given.
        index: u64,
        /// The journal's `first_index` at that point of the batch.
        first: u64,
        /// The journal's `end_index` at that point of the batch.
        end: u64,
    },
    /// Options that cannot work (a zero segment size, limits larger than a segment, ...).
    InvalidOptions(String),
    /// An earlier write or sync failed, so the store no longer knows what is
    /// durable; it stays readable but refuses writes until reopened.
    WritesStopped {
        /// The error that stopped writes (an [`Error::Io`] as a rule);
        /// also returned by `source()`.
        cause: Arc<Error>,
    },
    /// The store was closed.
    Closed,
    /// No store at this path, and [`Options::create_if_missing`] is off.
    ///
    /// [`Options::create_if_missing`]: crate::Options::create_if_missing
    NotFound {
        /// The directory given to `Store::open`.
        path: PathBuf,
    },
}

impl Error {
    pub(crate) fn io(op: &'static str, path: impl Into<PathBuf>, source: io::Error) -> Self {
        Error::Io {
            op,
            path: path.into(),
            source: Arc::new(source),
        }
    }

    /// The error for a write refused because `cause` stopped writes. A
    /// `WritesStopped` cause is not wrapped again: the chain names the
    /// original failure once.
    pub(crate) fn writes_stopped(cause: &Error) -> Self {
        match cause {
            Error::WritesStopped { .. } => cause.clone(),
            other => Error::WritesStopped {
                cause: Arc::new(other.clone()),
            },
        }
    }

    pub(crate) fn corruption(
        path: impl Into<PathBuf>,
        offset: u64,
        reason: impl Into<String>,
    ) -> Self {
        Error::Corruption {
            path: path.into(),
            offset,
            journal: None,
            reason: reason.into(),
        }
    }

    /// Whether this error reports damaged or inconsistent bytes on disk.
    pub fn is_corruption(&self) -> bool {
        matches!(self, Error::Corruption { .. })
    }
}

/// Prints a journal id as text when it is printable UTF-8, else as hex.
#[derive(Debug)]
pub struct DisplayId<'a>(pub &'a [u8]);

impl fmt::Display for DisplayId<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match std::str::from_utf8(self.0) {
            Ok(s) if s.chars().all(|c| !c.is_control()) => write!(f, "{s:?}"),
            _ => {
                f.write_str("0x")?;
                for b in self.0 {
                    write!(f, "{b:02x}")?;
                }
                Ok(())
            }
        }
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Io { op, path, .. } => {
                write!(f, "I/O error during {op} on {}", path.display())
            }
            Error::Corruption {
                path,
                offset,
                journal,
                reason,
            } => {
                write!(f, "corruption in {} at offset {offset}", path.display())?;
                if let Some(j) = journal {
                    write!(f, " (journal {})", DisplayId(j))?;
                }
                write!(f, ": {reason}")
            }
            Error::UnsupportedVersion {
                path,
                found,
                supported,
            } => write!(
                f,
                "{} has format version {found}; this build reads version {supported}",
                path.display()
            ),
            Error::Locked { path } => write!(
                f,
                "store is already open (lock {} is held by another Store)",
                path.display()
            ),
            Error::InvalidJournalId { len } => {
                write!(f, "journal id must be 1 to 255 bytes, got {len}")
            }
            Error::ValueTooLarge {
                journal,
                what,
                len,
                max,
            } => write!(
                f,
                "{what} of {len} bytes for journal {} exceeds the limit of {max}",
                DisplayId(journal)
            ),
            Error::BatchTooLarge { len, max } => write!(
                f,
                "batch record of {len} bytes does not fit in a segment (max {max})"
            ),
            Error::UnexpectedIndex {
                journal,
                expected,
                actual,
            } => write!(
                f,
                "append_at index {expected} for journal {} but its end_index is {actual}",
                DisplayId(journal)
            ),
            Error::InvalidRange {
                journal,
                op,
                index,
                first,
                end,
            } => write!(
                f,
                "{op}({index}) on journal {} outside its range {first}..{end}",
                DisplayId(journal)
            ),
            Error::InvalidOptions(why) => write!(f, "invalid options: {why}"),
            Error::WritesStopped { .. } => {
                f.write_str("writes stopped after an earlier failure; reopen the store")
            }
            Error::Closed => f.write_str("store is closed"),
            Error::NotFound { path } => write!(
                f,
                "no store at {} (create_if_missing is off)",
                path.display()
            ),
        }
    }
}

/// Prints an error and every error of its [`source`] chain on one line,
/// outermost first, separated by `": "`: for example
/// `writes stopped after an earlier failure; reopen the store: I/O error
/// during sync segment on /data/seg-00000003.jseg: Input/output error (os
/// error 5)`.
///
/// For a user-facing message where the `Display` of one layer says too
/// little (see [`Error`]); any `std::error::Error` works.
///
/// ```
/// use journalstore::{DisplayChain, Error, Options, Store};
/// # let tmp = tempfile::tempdir().unwrap();
/// let missing = tmp.path().join("no-store-here");
/// let options = Options { create_if_missing: false, ..Options::default() };
/// let err: Error = Store::open(&missing, options).unwrap_err();
/// let io: std::io::Error = err.into(); // the chain survives the conversion
/// eprintln!("open failed: {}", DisplayChain(&io));
/// assert!(DisplayChain(&io).to_string().starts_with("no store at"));
/// ```
///
/// [`source`]: std::error::Error::source
#[derive(Debug, Clone, Copy)]
pub struct DisplayChain<'a>(pub &'a (dyn std::error::Error + 'static));

impl fmt::Display for DisplayChain<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)?;
        let mut next = self.0.source();
        while let Some(e) = next {
            write!(f, ": {e}")?;
            next = e.source();
        }
        Ok(())
    }
}

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Error::Io { source, .. } => Some(&**source),
            Error::WritesStopped { cause } => Some(&**cause),
            Error::Corruption { .. }
            | Error::UnsupportedVersion { .. }
            | Error::Locked { .. }
            | Error::InvalidJournalId { .. }
            | Error::ValueTooLarge { .. }
            | Error::BatchTooLarge { .. }
            | Error::UnexpectedIndex { .. }
            | Error::InvalidRange { .. }
            | Error::InvalidOptions(_)
            | Error::Closed
            | Error::NotFound { .. } => None,
        }
    }
}

/// For hosts whose interfaces speak `io::Error`: the kind says what happened
/// (`NotFound`, `InvalidInput` for rejected batches and options,
/// `InvalidData` for damage, the source's own kind for I/O errors), and the
/// journalstore error is kept as the payload (`io::Error::get_ref`,
/// `into_inner`). The `io::Error` prints as that error and its `source()` is
/// that error's source, so the chain below it survives the conversion.
impl From<Error> for io::Error {
    fn from(e: Error) -> io::Error {
        let kind = match &e {
            Error::Io { source, .. } => source.kind(),
            Error::Corruption { .. } | Error::UnsupportedVersion { .. } => {
                io::ErrorKind::InvalidData
            }
            Error::Locked { .. } => io::ErrorKind::WouldBlock,
            Error::NotFound { .. } => io::ErrorKind::NotFound,
            Error::InvalidJournalId { .. }
            | Error::ValueTooLarge { .. }
            | Error::BatchTooLarge { .. }
            | Error::UnexpectedIndex { .. }
            | Error::InvalidRange { .. }
            | Error::InvalidOptions(_) => io::ErrorKind::InvalidInput,
            Error::WritesStopped { .. } | Error::Closed => io::ErrorKind::Other,
        };
        io::Error::new(kind, e)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::error::Error as _;

    /// A refusal caused by a refusal names the original failure, once.
    #[test]
    fn writes_stopped_is_not_wrapped_twice() {
        let io = Error::io("sync segment", "seg", io::Error::other("eio"));
        let once = Error::writes_stopped(&io);
        let twice = Error::writes_stopped(&once);
        for e in [&once, &twice] {
            let cause = e.source().and_then(|s| s.downcast_ref::<Error>());
            assert!(matches!(cause, Some(Error::Io { .. })), "{e:?}");
        }
        assert_eq!(
            DisplayChain(&twice).to_string(),
            "writes stopped after an earlier failure; reopen the store: \
             I/O error during sync segment on seg: eio"
        );
    }
}
