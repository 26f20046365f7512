//! Why a run fails, and the exit status that says so.

/// Exit status when the sandbox could not be set up (as `docker run` uses).
pub const SETUP_FAILED: u8 = 125;

/// Why a run could not start. Printed as `tollgate run: <message>`; exit 125.
#[derive(Debug, thiserror::Error)]
pub enum LaunchError {
    /// The policy is not loaded.
    #[error("unknown policy: {0}")]
    UnknownPolicy(String),
    /// The in-process proxy could not start.
    #[error("{0}")]
    Proxy(String),
    /// The admin API failed or refused.
    #[error("{0}")]
    Admin(String),
    /// The sandbox could not be built.
    #[error("sandbox: {0}")]
    Sandbox(String),
    /// Configuration problem.
    #[error(transparent)]
    Config(#[from] crate::yaml::FileError),
}

impl From<crate::admin::client::AdminError> for LaunchError {
    fn from(err: crate::admin::client::AdminError) -> Self {
        LaunchError::Admin(err.to_string())
    }
}
