//! `journal-dump`: prints and checks a journalstore store, read-only.
//!
//! Every command reads through `journalstore::inspect`: it takes no lock and
//! writes no byte to the store, so it works on a store another process has
//! open. `salvage` writes only to its output directory. Each command builds
//! one report (`report.rs`), printed as text (`text.rs`) or, with `--json`,
//! as one JSON object whose shape is documented in this crate's README.
//!
//! Exit status: 0 when everything read was intact, 1 when damage, a read
//! error or lost data was found (the output still shows what could be read,
//! each problem with its file and offset), 2 for bad usage, 3 when the
//! store directory, file or journal asked for does not exist.

use std::io::Write;
use std::ops::Range;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Parser, Subcommand};

mod progress;
mod report;
mod text;

/// Prints and checks a journalstore store directory, read-only.
///
/// Never takes the store's lock and never writes to it: safe on a store
/// that another process has open (`salvage` and `import` write only to a
/// new directory). Data goes to stdout; messages about the run (a missing
/// directory, bad usage, progress) to stderr.
#[derive(Parser, Debug)]
#[command(
    name = "journal-dump",
    version,
    about,
    long_about,
    after_help = "Exit status:\n  0  everything read was intact\n  1  damage, a read error or lost data was found (the output still shows what could be read)\n  2  bad usage\n  3  not found: the store directory, file or journal does not exist"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Format versions (segments, manifest), generation, segments with
    /// their versions and live space, journals, entries, bytes, oldest and
    /// newest LSN; and the STATUS file an open store rewrites (its pinned
    /// snapshots, which only it can see).
    Summary {
        /// The store directory.
        dir: PathBuf,
        #[command(flatten)]
        out: OutputArgs,
    },
    /// Every segment file of a store: header and every record.
    Segments {
        /// The store directory.
        dir: PathBuf,
        #[command(flatten)]
        scan: ScanArgs,
        #[command(flatten)]
        out: OutputArgs,
    },
    /// One segment file: header and every record.
    Segment {
        /// The segment file (`seg-XXXXXXXX.jseg`).
        file: PathBuf,
        #[command(flatten)]
        scan: ScanArgs,
        #[command(flatten)]
        out: OutputArgs,
    },
    /// The manifest generations (`MANIFEST`, and `MANIFEST.tmp` if a swap
    /// was interrupted) and their segment lists.
    Manifest {
        /// A store directory or a manifest file.
        path: PathBuf,
        #[command(flatten)]
        out: OutputArgs,
    },
    /// Metadata and entries of one journal.
    Journal {
        /// The store directory.
        dir: PathBuf,
        /// The journal id, as text (or as hex with `--hex-id`).
        id: String,
        /// The id is given as hex digits (for ids that are not UTF-8).
        #[arg(long)]
        hex_id: bool,
        /// Print values as hex (in text: as a hexdump).
        #[arg(long, conflicts_with = "utf8")]
        hex: bool,
        /// Print long values whole (text only; JSON always holds them
        /// whole): otherwise cut after 128 bytes.
        #[arg(long)]
        full: bool,
        /// Print values as UTF-8 text (invalid bytes become U+FFFD).
        #[arg(long)]
        utf8: bool,
        /// Only entries with an index in `A..B` (also `A..`, `..B`, `A`).
        #[arg(long, value_parser = parse_range)]
        range: Option<Range<u64>>,
        #[command(flatten)]
        out: OutputArgs,
    },
    /// The index checkpoint files (`index-<generation>.jidx`): what each
    /// holds and whether the current manifest continues it, so that open
    /// can start from it. A file that does not decode is shown with the
    /// reason but is not damage: open ignores it.
    Index {
        /// The store directory.
        dir: PathBuf,
        #[command(flatten)]
        out: OutputArgs,
    },
    /// Checks every checksum and every cross-reference; exit status 0 only
    /// if all hold. Each problem is printed with its file and offset. Index
    /// checkpoints that do not decode or are stale are notes, not damage.
    Verify {
        /// The store directory.
        dir: PathBuf,
        #[command(flatten)]
        out: OutputArgs,
    },
    /// Every journal with its bounds, entries, entry bytes and metadata
    /// size, ascending by id (or the largest ones with `--top`).
    Journals {
        /// The store directory.
        dir: PathBuf,
        /// Only journals whose id starts with this (text, or hex with
        /// `--hex-id`).
        #[arg(long)]
        prefix: Option<String>,
        /// The prefix is given as hex digits.
        #[arg(long)]
        hex_id: bool,
        /// Only the N largest journals, by `--by`.
        #[arg(long, value_name = "N")]
        top: Option<usize>,
        /// What `--top` ranks by.
        #[arg(long, value_enum, default_value = "bytes")]
        by: ByArg,
        #[command(flatten)]
        out: OutputArgs,
    },
    /// Writes every journal (bounds, metadata, entries) to FILE as JSON
    /// lines, one batch a line, which `import` loads into a store of any
    /// format version (`-` for stdout).
    Export {
        /// The store directory (read only).
        dir: PathBuf,
        /// The export file to create (must not exist), or `-`.
        file: PathBuf,
        #[command(flatten)]
        out: OutputArgs,
    },
    /// Loads an `export` file (`-` for stdin) into a new store in DIR
    /// through the public Store API, with one sync at the end.
    Import {
        /// The export file, or `-`.
        file: PathBuf,
        /// A new directory for the store (must not hold a store).
        dir: PathBuf,
        #[command(flatten)]
        out: OutputArgs,
    },
    /// Copies every intact batch into a new store in OUT, reporting the
    /// damaged ones; DIR is not changed.
    Salvage {
        /// The damaged store directory (read only).
        dir: PathBuf,
        /// A new directory for the salvaged store (must not hold a store).
        out_dir: PathBuf,
        /// What to do with a journal whose salvaged state may differ from
        /// its last good state (touched by a lost batch, depending on one,
        /// or with entries or metadata that could not be read): `keep` it
        /// as salvaged, or `drop` it from the new store. Either way it is
        /// named in the report and the exit status is 1.
        #[arg(long, value_enum, default_value = "keep")]
        suspect: SuspectArg,
        #[command(flatten)]
        out: OutputArgs,
    },
}

/// `journals --by`.
#[derive(clap::ValueEnum, Debug, Clone, Copy)]
enum ByArg {
    /// The sum of the entries' lengths.
    Bytes,
    /// The number of entries.
    Entries,
}

/// `salvage --suspect`.
#[derive(clap::ValueEnum, Debug, Clone, Copy)]
enum SuspectArg {
    /// Copy suspect journals as salvaged.
    Keep,
    /// Leave suspect journals out of the new store.
    Drop,
}

#[derive(Args, Debug, Clone, Copy)]
struct OutputArgs {
    /// Print one JSON object (shape documented in the README) instead of text.
    #[arg(long)]
    json: bool,
}

#[derive(Args, Debug, Clone)]
struct ScanArgs {
    /// Only records with an operation on this journal, and only those
    /// operations (text, or hex with `--journal-hex`). Every record is
    /// still checked.
    #[arg(long, value_name = "ID")]
    journal: Option<String>,
    /// The `--journal` id is given as hex digits.
    #[arg(long)]
    journal_hex: bool,
    /// Only records with an LSN in `A..B` (also `A..`, `..B`, `A`).
    #[arg(long, value_name = "RANGE", value_parser = parse_range)]
    lsn: Option<Range<u64>>,
    /// Start at the first valid record at or after this byte offset (rounded
    /// up to a multiple of 8; at least 64, the end of the segment header).
    #[arg(long, value_name = "OFFSET")]
    from: Option<u64>,
    /// Print at most N records (and damaged places) per segment.
    #[arg(long, value_name = "N")]
    limit: Option<usize>,
}

/// Parses `A..B`, `A..`, `..B`, `..` or a single index `A`.
fn parse_range(s: &str) -> Result<Range<u64>, String> {
    let num = |t: &str, default: u64| -> Result<u64, String> {
        if t.is_empty() {
            Ok(default)
        } else {
            t.trim()
                .parse()
                .map_err(|_| format!("{t:?} is not an index (a number)"))
        }
    };
    match s.split_once("..") {
        Some((a, b)) => {
            let (start, end) = (num(a, 0)?, num(b, u64::MAX)?);
            if start > end {
                return Err(format!("range {s:?} starts after it ends"));
            }
            Ok(start..end)
        }
        None if !s.is_empty() => {
            let i = num(s, 0)?;
            Ok(i..i.saturating_add(1))
        }
        None => Err("empty range".into()),
    }
}

/// Decodes hex digits (an even number of them).
fn parse_hex(s: &str) -> Result<Vec<u8>, String> {
    let s = s.strip_prefix("0x").unwrap_or(s);
    if !s.len().is_multiple_of(2) || !s.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(format!("{s:?} is not an even number of hex digits"));
    }
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).map_err(|e| e.to_string()))
        .collect()
}

/// The record filter of `segments` and `segment`; `None` (after a message
/// on stderr) for a bad `--journal-hex` id.
fn scan_filter(scan: &ScanArgs) -> Option<report::Filter> {
    let journal = match &scan.journal {
        Some(j) if scan.journal_hex => match parse_hex(j) {
            Ok(j) => Some(j),
            Err(e) => {
                eprintln!("journal-dump: --journal: {e}");
                return None;
            }
        },
        Some(j) => Some(j.clone().into_bytes()),
        None => None,
    };
    Some(report::Filter {
        journal,
        lsns: scan.lsn.clone().unwrap_or(0..u64::MAX),
    })
}

/// Exit status for a path that does not exist.
const NOT_FOUND: u8 = 3;

/// The path a command reads, which must exist.
fn input_path(command: &Command) -> Option<&std::path::Path> {
    Some(match command {
        Command::Summary { dir, .. }
        | Command::Segments { dir, .. }
        | Command::Journal { dir, .. }
        | Command::Verify { dir, .. }
        | Command::Index { dir, .. }
        | Command::Journals { dir, .. }
        | Command::Export { dir, .. }
        | Command::Salvage { dir, .. } => dir,
        Command::Segment { file, .. } => file,
        Command::Manifest { path, .. } => path,
        Command::Import { file, .. } if file.as_os_str() != "-" => file,
        Command::Import { .. } => return None,
    })
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    // Before anything is printed: a mistyped path is not a damaged store.
    if let Some(path) = input_path(&cli.command) {
        if std::fs::symlink_metadata(path).is_err() {
            eprintln!(
                "journal-dump: {}: no such file or directory",
                path.display()
            );
            return ExitCode::from(NOT_FOUND);
        }
    }
    let mut text_opts = text::TextOptions::default();
    let (report, json) = match cli.command {
        Command::Journals {
            dir,
            prefix,
            hex_id,
            top,
            by,
            out,
        } => {
            let prefix = match prefix {
                Some(p) if hex_id => match parse_hex(&p) {
                    Ok(p) => Some(p),
                    Err(e) => {
                        eprintln!("journal-dump: --prefix: {e}");
                        return ExitCode::from(2);
                    }
                },
                Some(p) => Some(p.into_bytes()),
                None => None,
            };
            let by = match by {
                ByArg::Bytes => report::TopBy::Bytes,
                ByArg::Entries => report::TopBy::Entries,
            };
            (
                report::journals(&dir, prefix.as_deref(), top.map(|n| (n, by))),
                out.json,
            )
        }
        Command::Export { dir, file, out } => (report::export(&dir, &file), out.json),
        Command::Import { file, dir, out } => (report::import(&file, &dir), out.json),
        Command::Summary { dir, out } => (report::summary(&dir), out.json),
        Command::Segments { dir, scan, out } => {
            let Some(filter) = scan_filter(&scan) else {
                return ExitCode::from(2);
            };
            (
                report::segments_of_dir(&dir, scan.from, scan.limit, &filter),
                out.json,
            )
        }
        Command::Segment { file, scan, out } => {
            let Some(filter) = scan_filter(&scan) else {
                return ExitCode::from(2);
            };
            (
                report::segment_file(&file, scan.from, scan.limit, &filter),
                out.json,
            )
        }
        Command::Manifest { path, out } => (report::manifest(&path), out.json),
        Command::Journal {
            dir,
            id,
            hex_id,
            hex,
            utf8,
            full,
            range,
            out,
        } => {
            text_opts.full = full;
            let id = if hex_id {
                match parse_hex(&id) {
                    Ok(id) => id,
                    Err(e) => {
                        eprintln!("journal-dump: --hex-id: {e}");
                        return ExitCode::from(2);
                    }
                }
            } else {
                id.into_bytes()
            };
            let encoding = match (hex, utf8) {
                (true, _) => report::Encoding::Hex,
                (_, true) => report::Encoding::Utf8,
                _ => report::Encoding::Auto,
            };
            (
                report::journal(&dir, &id, encoding, range.unwrap_or(0..u64::MAX)),
                out.json,
            )
        }
        Command::Verify { dir, out } => (report::verify(&dir), out.json),
        Command::Index { dir, out } => (report::index(&dir), out.json),
        Command::Salvage {
            dir,
            out_dir,
            suspect,
            out,
        } => {
            let policy = match suspect {
                SuspectArg::Keep => journalstore::inspect::SuspectPolicy::Keep,
                SuspectArg::Drop => journalstore::inspect::SuspectPolicy::Drop,
            };
            let mut bar = progress::Bar::new();
            let report = report::salvage(&dir, &out_dir, policy, &mut |p| bar.update(p));
            bar.finish();
            (report, out.json)
        }
    };
    let code = if report.ok() {
        ExitCode::SUCCESS
    } else if report.not_found() {
        ExitCode::from(NOT_FOUND)
    } else {
        ExitCode::from(1)
    };
    // `export -` writes the data itself to stdout: the report goes to
    // stderr then.
    let report_to_stderr =
        matches!(&report, report::Report::Transfer(t) if t.command == "export" && t.file == "-");
    if report_to_stderr {
        let mut w = std::io::stderr().lock();
        let _ = if json {
            serde_json::to_writer_pretty(&mut w, &report)
                .map_err(std::io::Error::from)
                .and_then(|()| writeln!(w))
        } else {
            text::render(&mut w, &report, text_opts)
        };
        return code;
    }
    let stdout = std::io::stdout();
    let mut w = std::io::BufWriter::new(stdout.lock());
    let written = if json {
        serde_json::to_writer_pretty(&mut w, &report)
            .map_err(std::io::Error::from)
            .and_then(|()| writeln!(w))
    } else {
        text::render(&mut w, &report, text_opts)
    }
    .and_then(|()| w.flush());
    match written {
        Ok(()) => code,
        // A closed pipe (`journal-dump ... | head`) is not an error of ours.
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => code,
        Err(e) => {
            eprintln!("journal-dump: writing the output: {e}");
            ExitCode::from(1)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `--range` accepts the documented spellings and rejects the rest.
    #[test]
    fn ranges_parse_as_documented() {
        assert_eq!(parse_range("2..5"), Ok(2..5));
        assert_eq!(parse_range("2.."), Ok(2..u64::MAX));
        assert_eq!(parse_range("..5"), Ok(0..5));
        assert_eq!(parse_range(".."), Ok(0..u64::MAX));
        assert_eq!(parse_range("7"), Ok(7..8));
        assert!(parse_range("5..2").is_err());
        assert!(parse_range("a..b").is_err());
        assert!(parse_range("").is_err());
        assert_eq!(parse_range(&u64::MAX.to_string()), Ok(u64::MAX..u64::MAX));
    }

    /// `--hex-id` decodes pairs of hex digits, with or without `0x`.
    #[test]
    fn hex_ids_decode() {
        assert_eq!(parse_hex("6a00ff"), Ok(vec![0x6a, 0, 0xff]));
        assert_eq!(parse_hex("0xAB"), Ok(vec![0xab]));
        assert!(parse_hex("abc").is_err());
        assert!(parse_hex("zz").is_err());
        assert!(parse_hex("é1").is_err());
    }

    /// The clap definition is consistent (clap's own debug checks).
    #[test]
    fn cli_definition_is_valid() {
        use clap::CommandFactory;
        Cli::command().debug_assert();
    }
}
