#![no_main]
//! Fuzz target `ops_model`: see `journalstore_fuzz::ops_model` for what it checks.

libfuzzer_sys::fuzz_target!(|data: &[u8]| journalstore_fuzz::ops_model(data));
