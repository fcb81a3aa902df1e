//! Replays every fuzz regression case (`tests/fuzz_cases/`) through the same invariant check as
//! the fuzz targets (`rowgate::fuzzcheck`), under the same policies: the demo policy, then the
//! shared corpora's policy when the demo one refuses the input's tables.
//!
//! A case file holds the exact input text. Its name is `<what>.<outcome>.sql`, where the outcome
//! is `accepted` or the refusal code the input must get: an input that broke an invariant once
//! must now keep all of them, and must not quietly change from refused to accepted.
//! The long fuzzing runs are not part of `cargo test`; see README.md, "Fuzzing".

use std::path::{Path, PathBuf};

use rowgate::fuzzcheck::{fuzz_invariant_each, Outcome};
use rowgate::parse::Limits;
use rowgate::policy::Policy;

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

fn policies() -> Vec<Policy> {
    ["policies", "fuzz/policies"]
        .iter()
        .map(|dir| {
            Policy::load_dir(&root().join(dir))
                .unwrap_or_else(|e| panic!("policy {dir} does not load: {e}"))
        })
        .collect()
}

fn cases() -> Vec<PathBuf> {
    let mut cases: Vec<PathBuf> = std::fs::read_dir(root().join("tests/fuzz_cases"))
        .expect("tests/fuzz_cases exists")
        .map(|entry| entry.expect("readable directory entry").path())
        .filter(|path| path.extension().is_some_and(|e| e == "sql"))
        .collect();
    cases.sort();
    cases
}

/// The outcome a case's file name promises: `<what>.<outcome>.sql`.
fn expected_outcome(path: &Path) -> String {
    let stem = path
        .file_stem()
        .and_then(|s| s.to_str())
        .expect("a UTF-8 file name");
    stem.rsplit_once('.')
        .map(|(_, outcome)| outcome.to_string())
        .unwrap_or_else(|| panic!("{}: name it <what>.<outcome>.sql", path.display()))
}

fn outcome_name(outcome: &Outcome) -> String {
    match outcome {
        Outcome::Accepted => "accepted".into(),
        Outcome::Refused(code) => code.as_str().into(),
    }
}

#[test]
fn every_fuzz_case_keeps_the_invariants() {
    let cases = cases();
    // The seed cases committed with the fuzz targets; fewer means some were lost.
    assert!(cases.len() >= 20, "only {} fuzz cases", cases.len());
    // The server runs the pipeline on tokio worker threads, whose stacks are 2 MiB.
    let failures = std::thread::Builder::new()
        .stack_size(2 * 1024 * 1024)
        .spawn(move || {
            let policies = policies();
            let limits = Limits::default();
            let mut failures = Vec::new();
            for path in &cases {
                let bytes = std::fs::read(path).expect("readable case");
                // As the raw fuzz target reads its bytes.
                let sql = String::from_utf8_lossy(&bytes);
                let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("?");
                match fuzz_invariant_each(&sql, &policies, &limits) {
                    Err(violation) => failures.push(format!("{name}: {violation}")),
                    Ok(outcome) => {
                        let got = outcome_name(&outcome);
                        if got != expected_outcome(path) {
                            failures.push(format!("{name}: the outcome is now {got}"));
                        }
                    }
                }
            }
            failures
        })
        .expect("spawn")
        .join()
        .expect("no case panics");
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn the_corpora_policy_lets_real_queries_reach_the_rewrite() {
    // Without it, the shared corpora's queries would all stop at table_not_allowed and the
    // fuzzers would see little of resolve and rewrite.
    let sql = "SELECT T2.CustomerID, SUM(T1.Amount) FROM transactions_1k AS T1 INNER JOIN yearmonth AS T2 ON T1.CustomerID = T2.CustomerID GROUP BY T2.CustomerID";
    let outcome = fuzz_invariant_each(sql, &policies(), &Limits::default());
    assert_eq!(outcome, Ok(Outcome::Accepted));
}
