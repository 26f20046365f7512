//! Replays every input the fuzzers kept (`fuzz/regressions/<target>/`) through the
//! same entry point the fuzz target uses, so a crash found once stays fixed. The
//! fuzzers themselves never run under `cargo test`; see `fuzz/README.md`.

#![expect(
    clippy::unwrap_used,
    reason = "a test stops on a folder it cannot read, with the error"
)]

use std::path::Path;

#[test]
fn every_saved_fuzz_input_still_passes() {
    replay_every_input_under("fuzz/regressions");
}

/// The seeds hold the invariants too: a seed that fails would only hide the
/// crash among the fuzzer's start inputs.
#[test]
fn every_seed_passes() {
    replay_every_input_under("fuzz/seeds");
}

fn replay_every_input_under(folder: &str) {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join(folder);
    let mut replayed = 0;
    for (name, run) in tollgate::fuzzing::TARGETS {
        let dir = root.join(name);
        assert!(dir.is_dir(), "{} is missing", dir.display());
        let mut inputs: Vec<_> = std::fs::read_dir(&dir)
            .unwrap()
            .map(|e| e.unwrap().path())
            .filter(|p| p.file_name().is_some_and(|n| n != ".keep"))
            .collect();
        inputs.sort();
        for input in inputs {
            let data = std::fs::read(&input).unwrap();
            let outcome = std::panic::catch_unwind(|| run(&data));
            assert!(outcome.is_ok(), "{} fails", input.display());
            replayed += 1;
        }
    }
    eprintln!("replayed {replayed} inputs from {folder}");
}

#[test]
fn every_target_has_a_folder_and_nothing_else_is_there() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz/regressions");
    let names: Vec<&str> = tollgate::fuzzing::TARGETS.iter().map(|t| t.0).collect();
    for entry in std::fs::read_dir(&root).unwrap() {
        let name = entry.unwrap().file_name().to_string_lossy().to_string();
        assert!(
            names.contains(&name.as_str()),
            "fuzz/regressions/{name} names no target"
        );
    }
}

proptest::proptest! {
    #![proptest_config(proptest::prelude::ProptestConfig { cases: 256, ..Default::default() })]

    /// Random bytes through every target: the same invariants, a few hundred
    /// inputs per `cargo test`, between fuzzing campaigns.
    #[test]
    fn every_target_holds_on_random_input(data in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..512)) {
        for (_, run) in tollgate::fuzzing::TARGETS {
            run(&data);
        }
    }
}
