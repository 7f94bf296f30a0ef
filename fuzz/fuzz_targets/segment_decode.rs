#![no_main]
//! Fuzz target `segment_decode`: see `journalstore_fuzz::segment_decode` for what it checks,
//! and `journalstore_fuzz::budget` for the budgets every input must keep.

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    journalstore_fuzz::budget::run("segment_decode", data, journalstore_fuzz::segment_decode);
});
