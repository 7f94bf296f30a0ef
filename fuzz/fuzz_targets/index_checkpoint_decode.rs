#![no_main]
//! Fuzz target `index_checkpoint_decode`: see `journalstore_fuzz::index_checkpoint_decode` for
//! what it checks, and `journalstore_fuzz::budget` for the budgets every input must keep.

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    journalstore_fuzz::budget::run(
        "index_checkpoint_decode",
        data,
        journalstore_fuzz::index_checkpoint_decode,
    );
});
