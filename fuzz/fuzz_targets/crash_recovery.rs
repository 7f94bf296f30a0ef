#![no_main]
//! Fuzz target `crash_recovery`: see `journalstore_fuzz::crash_recovery` for what it checks,
//! and `journalstore_fuzz::budget` for the budgets every input must keep.

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    journalstore_fuzz::budget::run("crash_recovery", data, journalstore_fuzz::crash_recovery);
});
