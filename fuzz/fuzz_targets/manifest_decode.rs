#![no_main]
//! Fuzz target `manifest_decode`: see `journalstore_fuzz::manifest_decode` for what it checks,
//! and `journalstore_fuzz::budget` for the budgets every input must keep.

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    journalstore_fuzz::budget::run("manifest_decode", data, journalstore_fuzz::manifest_decode);
});
