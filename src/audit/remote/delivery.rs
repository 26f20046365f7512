//! What the transports of the remote sinks share: how a delivery fails, a line
//! in the sink's format, an error's text.

use super::ocsf;
use crate::config::SinkFormat;
use std::borrow::Cow;
use tracing::warn;

/// Why a delivery failed, and how many records of the batch got through first.
pub(crate) struct Failure {
    pub acked: usize,
    pub reason: String,
}

/// `line` as the sink's format wants it; a line that is not a JSON object cannot
/// be rendered as OCSF and goes out as it is.
pub(crate) fn render(format: SinkFormat, line: &[u8]) -> Cow<'_, [u8]> {
    match format {
        SinkFormat::Native => Cow::Borrowed(line),
        SinkFormat::Ocsf => match ocsf::render_ocsf(line) {
            Ok(v) => Cow::Owned(v),
            Err(e) => {
                warn!(error = %e, "audit record cannot be rendered as OCSF; sent as it is");
                Cow::Borrowed(line)
            }
        },
    }
}

/// An error and its sources, `: `-separated.
pub(crate) fn error_chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        let more = s.to_string();
        if !text.contains(&more) {
            text.push_str(": ");
            text.push_str(&more);
        }
        source = s.source();
    }
    text
}
