//! AFL++ target `websocket`: every input goes to `tollgate::fuzzing::websocket::run`, the
//! entry point that `tests/fuzz_regressions.rs` also replays.

fn main() {
    afl::fuzz!(|data: &[u8]| {
        tollgate::fuzzing::websocket::run(data);
    });
}
