//! AFL++ target `content`: every input goes to `tollgate::fuzzing::content::run`, the
//! entry point that `tests/fuzz_regressions.rs` also replays.

fn main() {
    afl::fuzz!(|data: &[u8]| {
        tollgate::fuzzing::content::run(data);
    });
}
