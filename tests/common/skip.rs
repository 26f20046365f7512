//! Loud skips. A test that cannot run on this machine (not root, a tool missing)
//! says so in one line on the real stderr, naming itself and what is missing;
//! libtest's capture would swallow an `eprintln!`. With
//! `TOLLGATE_TESTS_REQUIRE_ALL=1` (`.ci/run` sets it: CI runs as root with every
//! tool installed) a skip fails the test instead.

use std::io::Write;
use std::path::Path;

/// Where system tools are looked for.
const TOOL_DIRS: &[&str] = &["/usr/sbin", "/sbin", "/usr/bin", "/bin", "/usr/local/sbin"];

/// Whether this process runs as root.
pub fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions and cannot fail.
    unsafe { libc::geteuid() == 0 }
}

/// Whether `tool` is installed in one of the system directories.
pub fn has_tool(tool: &str) -> bool {
    TOOL_DIRS
        .iter()
        .any(|dir| Path::new(dir).join(tool).exists())
}

/// Whether the running test can go on: this process is root and every one of
/// `tools` is installed. When not, reports the skip (see [`skipped`]); `why` says
/// what the test needs them for.
pub fn needs_root_and_tools(tools: &[&str], why: &str) -> bool {
    let mut missing: Vec<&str> = Vec::new();
    if !is_root() {
        missing.push("root");
    }
    missing.extend(tools.iter().copied().filter(|tool| !has_tool(tool)));
    if missing.is_empty() {
        return true;
    }
    skipped(&format!("needs {} ({why})", missing.join(", ")));
    false
}

/// Whether the running test can go on as root; see [`needs_root_and_tools`].
pub fn needs_root(why: &str) -> bool {
    needs_root_and_tools(&[], why)
}

/// Reports that the running test (or the part of it named in `what`) is skipped:
/// one line on stderr, past libtest's capture. Under
/// `TOLLGATE_TESTS_REQUIRE_ALL=1` it fails the test instead.
pub fn skipped(what: &str) {
    let test = std::thread::current()
        .name()
        .map_or_else(|| "this test".to_string(), str::to_string);
    let line = format!("SKIPPED {}::{test}: {what}", env!("CARGO_CRATE_NAME"));
    if std::env::var_os("TOLLGATE_TESTS_REQUIRE_ALL").is_some_and(|v| v == "1") {
        panic!("{line}; TOLLGATE_TESTS_REQUIRE_ALL=1 forbids skipping");
    }
    let _ = writeln!(std::io::stderr().lock(), "{line}");
}
