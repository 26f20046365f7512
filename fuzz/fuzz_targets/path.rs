//! AFL++ target `path`: every input goes to `tollgate::fuzzing::path::run`, the
//! entry point that `tests/fuzz_regressions.rs` also replays.

fn main() {
    afl::fuzz!(|data: &[u8]| {
        tollgate::fuzzing::path::run(data);
    });
}
