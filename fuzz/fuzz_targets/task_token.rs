//! AFL++ target `task_token`: every input goes to `tollgate::fuzzing::task_token::run`, the
//! entry point that `tests/fuzz_regressions.rs` also replays.

fn main() {
    afl::fuzz!(|data: &[u8]| {
        tollgate::fuzzing::task_token::run(data);
    });
}
