#![no_main]
//! Fuzz target `segment_decode`: see `journalstore_fuzz::segment_decode` for what it checks.

libfuzzer_sys::fuzz_target!(|data: &[u8]| journalstore_fuzz::segment_decode(data));
