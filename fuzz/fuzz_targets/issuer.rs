//! AFL++ target `issuer`: every input goes to `tollgate::fuzzing::issuer::run`, the
//! entry point that `tests/fuzz_regressions.rs` also replays.

fn main() {
    afl::fuzz!(|data: &[u8]| {
        tollgate::fuzzing::issuer::run(data);
    });
}
