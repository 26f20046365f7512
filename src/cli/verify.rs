//! `tollgate audit verify`: prints what [`verify_files_by_stream`] found, a line
//! per stream when the files hold more than one stream or a named one, then the
//! total.

use crate::audit::key::Verifier;
use crate::audit::verify::{verify_files_by_stream, StreamsReport, VerifyFailure};
use std::io::Write;
use std::path::{Path, PathBuf};

/// Verifies `files` against the public key at `key`; returns the exit code: 0
/// when every stream verified (records after a stream's last checkpoint are
/// reported as unconfirmed but do not fail it), 1 when any stream failed or a
/// file could not be read or parsed.
pub fn run(files: &[PathBuf], key: &Path) -> anyhow::Result<u8> {
    let verifier = Verifier::load(key)?;
    let result = verify_files_by_stream(files, &verifier);
    let mut out = std::io::stdout().lock();
    let mut err = std::io::stderr().lock();
    Ok(report(&result, &mut out, &mut err)?)
}

/// Writes the outcome: stream lines and the total on `out`, failures on `err`.
/// Returns the exit code.
pub fn report(
    result: &Result<StreamsReport, VerifyFailure>,
    out: &mut dyn Write,
    err: &mut dyn Write,
) -> std::io::Result<u8> {
    let streams = match result {
        Ok(streams) => streams,
        Err(failure) => {
            writeln!(err, "tollgate: audit verify: {failure}")?;
            return Ok(1);
        }
    };
    if streams.names_streams() {
        for verdict in &streams.streams {
            if let Ok(counts) = &verdict.result {
                writeln!(out, "{}: {counts}", verdict.stream)?;
            }
        }
    }
    match streams.total() {
        Ok(total) => {
            writeln!(out, "{total}")?;
            Ok(0)
        }
        Err(_) => {
            for failure in streams.failures() {
                writeln!(err, "tollgate: audit verify: {failure}")?;
            }
            Ok(1)
        }
    }
}
