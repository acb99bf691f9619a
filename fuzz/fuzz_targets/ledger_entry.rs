#![no_main]

#[path = "../harness_ledger.rs"]
mod harness_ledger;

libfuzzer_sys::fuzz_target!(|data: &[u8]| harness_ledger::ledger_entry(data));
