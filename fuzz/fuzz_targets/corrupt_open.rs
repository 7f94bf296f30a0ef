#![no_main]
//! Fuzz target `corrupt_open`: see `journalstore_fuzz::corrupt_open` for what it checks,
//! and `journalstore_fuzz::budget` for the budgets every input must keep.

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    journalstore_fuzz::budget::run("corrupt_open", data, journalstore_fuzz::corrupt_open);
});
