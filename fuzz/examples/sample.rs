//! Prints what the structured target's inputs turn into, and how the pipeline judged them:
//! `cargo run --release --example sample -- corpus/structured [how-many-to-print]`.
//! Also the way to turn a structured crash artifact into the SQL for `tests/fuzz_cases/`.

use std::collections::BTreeMap;

use arbitrary::Unstructured;
use rowgate::fuzzcheck::{fuzz_invariant_each, Outcome};
use rowgate::parse::Limits;

fn main() {
    let mut args = std::env::args().skip(1);
    let path = args.next().unwrap_or_else(|| "corpus/structured".into());
    let show: usize = args.next().and_then(|n| n.parse().ok()).unwrap_or(10);
    let files: Vec<std::path::PathBuf> = if std::path::Path::new(&path).is_dir() {
        let mut files: Vec<_> = std::fs::read_dir(&path)
            .expect("readable directory")
            .map(|e| e.expect("entry").path())
            .collect();
        files.sort();
        files
    } else {
        vec![path.into()]
    };
    let mut outcomes: BTreeMap<String, usize> = BTreeMap::new();
    for (i, file) in files.iter().enumerate() {
        let data = std::fs::read(file).expect("readable file");
        let Ok(sql) = rowgate_fuzz::generate::sql(&mut Unstructured::new(&data)) else {
            continue;
        };
        let outcome = match fuzz_invariant_each(&sql, rowgate_fuzz::policies(), &Limits::default())
        {
            Ok(Outcome::Accepted) => "accepted".to_string(),
            Ok(Outcome::Refused(code)) => code.as_str().to_string(),
            Err(violation) => format!("VIOLATION: {violation}"),
        };
        if i < show {
            println!("{outcome}: {sql}");
        }
        *outcomes.entry(outcome).or_default() += 1;
    }
    for (outcome, count) in outcomes {
        println!("{count:8} {outcome}");
    }
}
