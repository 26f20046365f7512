//! AFL++ target `scrub`: every input goes to `tollgate::fuzzing::scrub::run`, the
//! entry point that `tests/fuzz_regressions.rs` also replays.

fn main() {
    afl::fuzz!(|data: &[u8]| {
        tollgate::fuzzing::scrub::run(data);
    });
}
