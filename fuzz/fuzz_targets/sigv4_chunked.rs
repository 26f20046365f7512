//! AFL++ target `sigv4_chunked`: every input goes to `tollgate::fuzzing::sigv4_chunked::run`, the
//! entry point that `tests/fuzz_regressions.rs` also replays.

fn main() {
    afl::fuzz!(|data: &[u8]| {
        tollgate::fuzzing::sigv4_chunked::run(data);
    });
}
