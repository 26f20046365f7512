//! AFL++ target `sigv4`: every input goes to `tollgate::fuzzing::sigv4::run`, the
//! entry point that `tests/fuzz_regressions.rs` also replays.

fn main() {
    afl::fuzz!(|data: &[u8]| {
        tollgate::fuzzing::sigv4::run(data);
    });
}
