#![no_main]
//! Fuzz target `manifest_decode`: see `journalstore_fuzz::manifest_decode` for what it checks.

libfuzzer_sys::fuzz_target!(|data: &[u8]| journalstore_fuzz::manifest_decode(data));
