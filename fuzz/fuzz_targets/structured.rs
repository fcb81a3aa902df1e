//! Structure-aware: the bytes are a recipe for `rowgate_fuzz::generate`, which writes SQL that
//! mostly parses, so the fuzzer explores guard, resolve and rewrite rather than syntax errors.
#![no_main]

use arbitrary::Unstructured;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let mut u = Unstructured::new(data);
    if let Ok(sql) = rowgate_fuzz::generate::sql(&mut u) {
        rowgate_fuzz::run(&sql);
    }
});
