//! Fuzz target `task_token`: not written yet.

/// Runs one input.
pub fn run(data: &[u8]) {
    let _ = data;
}
