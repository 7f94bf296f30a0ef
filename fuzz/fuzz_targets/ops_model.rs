#![no_main]
//! Fuzz target `ops_model`: see `journalstore_fuzz::ops_model` for what it checks,
//! and `journalstore_fuzz::budget` for the budgets every input must keep.

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    journalstore_fuzz::budget::run("ops_model", data, journalstore_fuzz::ops_model);
});
