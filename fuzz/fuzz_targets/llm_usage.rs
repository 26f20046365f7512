//! AFL++ target `llm_usage`: every input goes to `tollgate::fuzzing::llm_usage::run`, the
//! entry point that `tests/fuzz_regressions.rs` also replays.

fn main() {
    afl::fuzz!(|data: &[u8]| {
        tollgate::fuzzing::llm_usage::run(data);
    });
}
