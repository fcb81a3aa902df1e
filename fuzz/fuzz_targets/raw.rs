//! Raw bytes: any text, straight into the pipeline (the seeds are real SQL; see fuzz/seeds.py).
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    // The HTTP API only ever receives UTF-8 (JSON strings); invalid bytes are replaced rather
    // than skipped, so mutations that break UTF-8 still exercise the parser.
    let sql = String::from_utf8_lossy(data);
    rowgate_fuzz::run(&sql);
});
