//! AFL++ target `basic`: every input goes to `tollgate::fuzzing::basic::run`, the
//! entry point that `tests/fuzz_regressions.rs` also replays.

fn main() {
    afl::fuzz!(|data: &[u8]| {
        tollgate::fuzzing::basic::run(data);
    });
}
