//! Writes the seed corpora in `corpus/<target>/`: `cargo run --example seeds`.
//!
//! The file-level targets start from the real files of the template store
//! (its segments, cut after their data, and its manifests), with the
//! control bytes that send them down each path; the structured targets
//! start from a few pseudo-random byte strings, since any bytes decode to
//! some history. Existing files with the same names are overwritten; other
//! files are left alone.

use std::path::Path;

fn write(target: &str, name: &str, bytes: &[u8]) {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("corpus")
        .join(target);
    std::fs::create_dir_all(&dir).expect("create corpus directory");
    std::fs::write(dir.join(name), bytes).expect("write seed");
}

fn main() {
    for variant in 0..2 {
        let files = journalstore_fuzz::template_files(variant);
        for (name, bytes) in &files {
            if name == "MANIFEST" {
                write("manifest_decode", &format!("t{variant}-raw"), bytes);
                for control in [0u8, 1, 2, 3] {
                    let mut seed = vec![control];
                    seed.extend_from_slice(bytes);
                    write(
                        "manifest_decode",
                        &format!("t{variant}-control{control}"),
                        &seed,
                    );
                }
                continue;
            }
            // The data and one zero record header after it, 8-aligned.
            let used = bytes.iter().rposition(|&b| b != 0).map_or(0, |p| p + 1);
            let keep = ((used + 7) & !7) + 32;
            let seg = &bytes[..keep.min(bytes.len())];
            let stem = name.trim_end_matches(".jseg");
            write("segment_decode", &format!("t{variant}-{stem}-scan"), seg);
            // First byte odd: also opened as a store ('J' is 0x4a). 0x02:
            // recompute record checksums, 0x04: and value checksums, 0x08:
            // sealed, 0x10: salvage.
            for control in [0x4bu8, 0x4f, 0x5b] {
                let mut seed = seg.to_vec();
                seed[0] = control;
                write(
                    "segment_decode",
                    &format!("t{variant}-{stem}-store{control:02x}"),
                    &seed,
                );
            }
        }
    }
    // The genuine checkpoint: whole (bit 0 clear), checksums recomputed
    // (bit 1), cut short, and as a list of flips (bit 0 set).
    let checkpoint = journalstore_fuzz::template_checkpoint();
    for control in [0u8, 2] {
        let mut seed = vec![control];
        seed.extend_from_slice(&checkpoint);
        write(
            "index_checkpoint_decode",
            &format!("genuine-control{control}"),
            &seed,
        );
    }
    let mut cut = vec![2u8];
    cut.extend_from_slice(&checkpoint[..checkpoint.len() / 2]);
    write("index_checkpoint_decode", "cut-half", &cut);
    write(
        "index_checkpoint_decode",
        "flips",
        &[1, 70, 0, 0x08, 40, 1, 0x80],
    );
    // Seeded: the same seeds on every run.
    let mut rng = fastrand::Rng::with_seed(0x5eed);
    for target in ["ops_model", "crash_recovery", "corrupt_open"] {
        for len in [16usize, 128, 512, 2048] {
            let mut bytes = vec![0; len];
            rng.fill(&mut bytes);
            write(target, &format!("random-{len}"), &bytes);
        }
    }
}
