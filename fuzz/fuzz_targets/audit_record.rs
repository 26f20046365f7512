//! AFL++ target `audit_record`: every input goes to `tollgate::fuzzing::audit_record::run`, the
//! entry point that `tests/fuzz_regressions.rs` also replays.

fn main() {
    afl::fuzz!(|data: &[u8]| {
        tollgate::fuzzing::audit_record::run(data);
    });
}
