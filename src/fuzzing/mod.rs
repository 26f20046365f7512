//! Entry points shared by the fuzz targets (`fuzz/`) and by the test that replays
//! every saved input (`tests/fuzz_regressions.rs`), so a crash found once stays a
//! test. Each `run` takes arbitrary bytes, as a peer or a file could send them, and
//! checks the invariants of one parser; a failed invariant is an `assert!`, which
//! the fuzzer reports as a crash. Nothing here runs on the request path.

pub mod audit_record;
pub mod authority;
pub mod basic;
pub mod config;
pub mod content;
pub mod issuer;
pub mod llm_usage;
pub mod path;
pub mod scrub;
pub mod sigv4;
pub mod sigv4_chunked;
pub mod task_token;
pub mod websocket;

/// A target's name and its entry point.
pub type Target = (&'static str, fn(&[u8]));

/// Every target, by the name of its `fuzz/fuzz_targets/<name>.rs` and of its
/// folder of saved inputs under `fuzz/regressions/`.
pub const TARGETS: [Target; 13] = [
    ("audit_record", audit_record::run),
    ("authority", authority::run),
    ("basic", basic::run),
    ("config", config::run),
    ("content", content::run),
    ("issuer", issuer::run),
    ("llm_usage", llm_usage::run),
    ("path", path::run),
    ("scrub", scrub::run),
    ("sigv4", sigv4::run),
    ("sigv4_chunked", sigv4_chunked::run),
    ("task_token", task_token::run),
    ("websocket", websocket::run),
];
