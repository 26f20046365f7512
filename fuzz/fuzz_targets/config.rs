//! AFL++ target `config`: every input goes to `tollgate::fuzzing::config::run`, the
//! entry point that `tests/fuzz_regressions.rs` also replays.

fn main() {
    afl::fuzz!(|data: &[u8]| {
        tollgate::fuzzing::config::run(data);
    });
}
