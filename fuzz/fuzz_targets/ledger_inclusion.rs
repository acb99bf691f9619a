#![no_main]

#[path = "../harness_ledger.rs"]
#[allow(dead_code)] // each target uses one entry point
mod harness_ledger;

libfuzzer_sys::fuzz_target!(|data: &[u8]| harness_ledger::ledger_inclusion(data));
