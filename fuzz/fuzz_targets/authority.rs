//! AFL++ target `authority`: every input goes to `tollgate::fuzzing::authority::run`, the
//! entry point that `tests/fuzz_regressions.rs` also replays.

fn main() {
    afl::fuzz!(|data: &[u8]| {
        tollgate::fuzzing::authority::run(data);
    });
}
