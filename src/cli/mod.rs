//! The command line of DESIGN.md, and the front ends that are more than a call
//! into the library: `policy explain`, `approvals` and `audit verify`.

pub mod approvals;
pub mod explain;
pub mod terminal;
pub mod verify;

use clap::{Args, Parser, Subcommand};
use std::path::PathBuf;

/// tollgate: a credential-injecting egress proxy for sandboxes.
#[derive(Debug, Parser)]
#[command(name = "tollgate", version, about, propagate_version = true)]
pub struct Cli {
    /// Config file (default: ./tollgate.yaml if present, else built-in defaults;
    /// `approvals` reads a config only when this is given).
    #[arg(long, global = true, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// Top-level commands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the proxy until SIGTERM/SIGINT, then drain in-flight requests.
    Serve,
    /// Manage the MITM certificate authority.
    #[command(subcommand)]
    Ca(CaCommand),
    /// Validate and explain policies.
    #[command(subcommand)]
    Policy(PolicyCommand),
    /// Verify the audit trail and manage its signing key.
    #[command(subcommand)]
    Audit(AuditCommand),
    /// Run CMD in a sandbox whose only way out is tollgate; exit with CMD's status.
    Run(RunArgs),
    /// List, approve and deny requests held by `action: approve` rules.
    Approvals(ApprovalsArgs),
}

/// Arguments of `approvals`.
#[derive(Debug, Args)]
pub struct ApprovalsArgs {
    /// The running tollgate's admin API (`http://HOST:PORT`, `HOST:PORT` or
    /// `unix:/PATH`; default: `admin.listen` of --config if given, else
    /// 127.0.0.1:3129).
    #[arg(long, global = true, value_name = "URL")]
    pub admin: Option<String>,
    /// File holding the admin token (else $TOLLGATE_ADMIN_TOKEN; else, with
    /// --config and without --admin, the config's `admin.token_file` if it is a
    /// regular file that only its owner can read).
    #[arg(long, global = true, value_name = "FILE")]
    pub admin_token_file: Option<PathBuf>,
    /// What to do.
    #[command(subcommand)]
    pub command: ApprovalsCommand,
}

/// `tollgate approvals ...`
#[derive(Debug, Subcommand)]
pub enum ApprovalsCommand {
    /// Show the requests waiting for a decision.
    List {
        /// Print the admin API's JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Show one held request in full: URL, headers and the start of its body.
    Show {
        /// The approval id (from `approvals list`).
        id: String,
        /// Print the admin API's JSON instead.
        #[arg(long)]
        json: bool,
    },
    /// Let a held request through.
    Approve {
        /// The approval id (from `approvals list`).
        id: String,
        /// Also let the same task's requests under the same rule through for this
        /// long without asking, e.g. 10m.
        #[arg(long = "for", value_name = "DUR")]
        for_: Option<String>,
        /// Why (recorded in the audit trail).
        #[arg(long, value_name = "TEXT")]
        reason: Option<String>,
        /// Who decides (recorded; default: $SUDO_USER, else $USER).
        #[arg(long, value_name = "NAME")]
        by: Option<String>,
    },
    /// Refuse a held request (its client gets 403 approval_denied).
    Deny {
        /// The approval id (from `approvals list`).
        id: String,
        /// Why (recorded in the audit trail).
        #[arg(long, value_name = "TEXT")]
        reason: Option<String>,
        /// Who decides (recorded; default: $SUDO_USER, else $USER).
        #[arg(long, value_name = "NAME")]
        by: Option<String>,
    },
}

/// Arguments of `run`.
#[derive(Debug, Args)]
pub struct RunArgs {
    /// A running tollgate's admin API (`http://HOST:PORT` or `unix:/PATH`);
    /// without it, tollgate runs in-process from --config or the defaults.
    #[arg(long, value_name = "URL")]
    pub admin: Option<String>,
    /// File holding the admin token (else $TOLLGATE_ADMIN_TOKEN).
    #[arg(long, value_name = "FILE")]
    pub admin_token_file: Option<PathBuf>,
    /// The policy the sandbox runs under.
    #[arg(long)]
    pub policy: String,
    /// Task lifetime, e.g. 30m (default 1h).
    #[arg(long, value_name = "DUR")]
    pub ttl: Option<String>,
    /// Who CMD runs as: NAME, UID or UID:GID. Through sudo the default is the
    /// invoking user; a root caller without sudo must say (`--user root` keeps
    /// root, which the sandbox cannot contain).
    #[arg(long, value_name = "USER")]
    pub user: Option<String>,
    /// Environment variable for CMD (repeatable): K=V, or K to pass the
    /// launcher's own value. CMD inherits only PATH, HOME, USER, LOGNAME, SHELL,
    /// TERM, LANG, LC_*, TZ, TMPDIR and a few terminal variables.
    #[arg(long = "env", value_name = "K=V", value_parser = crate::launcher::env::parse_env_pair)]
    pub env: Vec<(String, String)>,
    /// The command and its arguments, after `--`.
    #[arg(last = true, required = true, value_name = "CMD")]
    pub command: Vec<std::ffi::OsString>,
}

/// `tollgate audit ...`
#[derive(Debug, Subcommand)]
pub enum AuditCommand {
    /// Check signatures, chain and sequence, each replica's stream on its own;
    /// exit 0 with `N records ok` (a line per stream first when there are several),
    /// 1 naming the first bad record of each failing stream and why.
    Verify {
        /// Log files, rotated ones included, in any order.
        #[arg(required = true, value_name = "FILE")]
        files: Vec<PathBuf>,
        /// The ed25519 public key (`audit.key.pub`).
        #[arg(long, value_name = "PUBKEY_FILE")]
        key: PathBuf,
    },
    /// Create the ed25519 audit signing key pair if absent; print both paths.
    Keygen {
        /// Directory for audit.key and audit.key.pub (default: the config's `audit.key`).
        #[arg(long, value_name = "DIR")]
        dir: Option<PathBuf>,
    },
}

/// `tollgate ca ...`
#[derive(Debug, Subcommand)]
pub enum CaCommand {
    /// Create the MITM CA (cert + 0600 key) if absent; print the cert path.
    Init {
        /// Directory for ca.pem and ca.key (default: the config's `ca` paths).
        #[arg(long, value_name = "DIR")]
        dir: Option<PathBuf>,
    },
}

/// `tollgate policy ...`
#[derive(Debug, Subcommand)]
pub enum PolicyCommand {
    /// Validate every policy file; print file:line and reason for each bad file.
    Check {
        /// Policy directory (default: the config's `policies`).
        dir: Option<PathBuf>,
    },
    /// Show which rule matches a request, the decision, and the secrets it would get.
    Explain(ExplainArgs),
}

/// Arguments of `policy explain`.
#[derive(Debug, Args)]
pub struct ExplainArgs {
    /// Policy name.
    #[arg(long)]
    pub policy: String,
    /// HTTP method, e.g. GET.
    pub method: String,
    /// Full URL, e.g. https://api.github.com/repos/acme/x/pulls.
    pub url: String,
    /// Request header `K: V` (repeatable).
    #[arg(short = 'H', long = "header", value_name = "K: V")]
    pub headers: Vec<String>,
    /// Request body, or `@FILE` to read it from a file, for rules that read
    /// the body (`jsonrpc`, `graphql`).
    #[arg(short = 'd', long = "data", value_name = "BODY|@FILE")]
    pub data: Option<String>,
}
