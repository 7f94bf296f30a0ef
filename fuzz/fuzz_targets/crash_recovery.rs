#![no_main]
//! Fuzz target `crash_recovery`: see `journalstore_fuzz::crash_recovery` for what it checks.

libfuzzer_sys::fuzz_target!(|data: &[u8]| journalstore_fuzz::crash_recovery(data));
