#![no_main]
//! Fuzz target `corrupt_open`: see `journalstore_fuzz::corrupt_open` for what it checks.

libfuzzer_sys::fuzz_target!(|data: &[u8]| journalstore_fuzz::corrupt_open(data));
