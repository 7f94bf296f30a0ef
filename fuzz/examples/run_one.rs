//! Runs one target on one input file, outside libFuzzer (e.g. under a
//! debugger, or with `FUZZ_TRACE=1`): `cargo run --example run_one TARGET FILE`.

fn main() {
    let mut args = std::env::args().skip(1);
    let (Some(target), Some(path)) = (args.next(), args.next()) else {
        eprintln!("usage: run_one TARGET FILE");
        std::process::exit(2);
    };
    let data = std::fs::read(&path).expect("read input");
    let run: fn(&[u8]) = match target.as_str() {
        "segment_decode" => journalstore_fuzz::segment_decode,
        "manifest_decode" => journalstore_fuzz::manifest_decode,
        "index_checkpoint_decode" => journalstore_fuzz::index_checkpoint_decode,
        "ops_model" => journalstore_fuzz::ops_model,
        "crash_recovery" => journalstore_fuzz::crash_recovery,
        "corrupt_open" => journalstore_fuzz::corrupt_open,
        other => {
            eprintln!("unknown target {other}");
            std::process::exit(2);
        }
    };
    let cost = journalstore_fuzz::budget::run(&target, &data, run);
    eprintln!("{target}: {path}: ok, {cost:?}");
}
