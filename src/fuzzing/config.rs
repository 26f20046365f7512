//! Fuzz target `config`: not written yet.

/// Runs one input.
pub fn run(data: &[u8]) {
    let _ = data;
}
