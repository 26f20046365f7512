//! A minimal client of a running tollgate's admin API, shared by the commands
//! that talk to one (`tollgate run --admin`, `tollgate approvals`), and where
//! they find it and its token.
//!
//! One request per connection, JSON in and out, bearer-token auth. The admin API
//! is reached over TCP (`http://HOST:PORT` or `HOST:PORT`) or a Unix socket
//! (`unix:/PATH`); there is no TLS, as the admin API listens on loopback or a
//! socket only.
//!
//! Where `tollgate approvals` finds the admin API and which token it takes
//! ([`discover`]):
//!
//! - `--admin URL`: that API, with the token from `--admin-token-file FILE` or
//!   `$TOLLGATE_ADMIN_TOKEN`, never from a config (so a token is never sent to a
//!   proxy it does not belong to).
//! - `--config FILE` (explicit) without `--admin`: the config's `admin.listen`;
//!   the token from `--admin-token-file`, else `$TOLLGATE_ADMIN_TOKEN`, else the
//!   config's `admin.token_file`, read only if it is a regular file (not a
//!   symlink) that grants nothing to group or others.
//! - neither: `127.0.0.1:3129`, the built-in default, with the token from
//!   `--admin-token-file` or `$TOLLGATE_ADMIN_TOKEN`.
//!
//! A config is never looked for on its own (no `./tollgate.yaml`): the sandbox
//! may share the operator's filesystem and user, so it could plant one there
//! pointing `admin.listen` at a listener of its own and `admin.token_file` at
//! any file the operator can read, and have it sent as a Bearer token.

use crate::config::{Config, DEFAULT_ADMIN_LISTEN};
use crate::yaml::FileError;
use bytes::Bytes;
use http::{Method, Request, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper_util::rt::TokioIo;
use serde_json::Value;
use std::io::Read as _;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::time::Duration;
use tokio::net::TcpStream;

/// Largest admin API answer read.
pub const MAX_ADMIN_ANSWER: usize = 1024 * 1024;
/// Longest wait for one admin API call (connect, request and answer).
pub const ADMIN_TIMEOUT: Duration = Duration::from_secs(15);
/// The environment variable that holds the admin token.
pub const ADMIN_TOKEN_ENV: &str = "TOLLGATE_ADMIN_TOKEN";
/// Largest config token file read.
const MAX_TOKEN_FILE: u64 = 64 * 1024;

/// Why an admin API call, or finding its token, failed. Each prints as one line.
#[derive(Debug, thiserror::Error)]
pub enum AdminError {
    /// The URL is neither `http://HOST:PORT`, `HOST:PORT` nor `unix:/PATH`.
    #[error("--admin {url}: give http://HOST:PORT or unix:/PATH")]
    BadUrl {
        /// The URL as given.
        url: String,
    },
    /// A TCP URL with a path (`http://HOST:PORT/v1`).
    #[error("--admin {url}: the admin URL takes no path; give http://HOST:PORT (the client adds /v1/...)")]
    UrlPath {
        /// The URL as given.
        url: String,
    },
    /// Nothing accepted the connection.
    #[error(
        "cannot reach the tollgate admin API at {url}: {error} (is `tollgate serve` running?)"
    )]
    Unreachable {
        /// The admin URL.
        url: String,
        /// The connect error (in the message, not a `source`: one line says it all).
        error: std::io::Error,
    },
    /// No answer within [`ADMIN_TIMEOUT`].
    #[error("{url}: no answer in time")]
    Timeout {
        /// The admin URL.
        url: String,
    },
    /// The HTTP exchange failed (handshake, request or answer body).
    #[error("{url}: {message}")]
    Http {
        /// The admin URL, or what was being done.
        url: String,
        /// What failed.
        message: String,
    },
    /// The token file could not be read.
    #[error("{}: {error}", path.display())]
    TokenFile {
        /// The file.
        path: PathBuf,
        /// The read error (in the message).
        error: std::io::Error,
    },
    /// Neither a token file nor `$TOLLGATE_ADMIN_TOKEN` was given.
    #[error("--admin needs the admin token: --admin-token-file FILE or $TOLLGATE_ADMIN_TOKEN")]
    NoToken,
    /// [`discover`] found no token where it may look.
    #[error("approvals needs the admin token: --admin-token-file FILE or $TOLLGATE_ADMIN_TOKEN{}", in_parens(.hint))]
    NoTokenFound {
        /// What else could have given one, or why the config's did not.
        hint: Option<String>,
    },
    /// The config given could not be read.
    #[error(transparent)]
    Config(#[from] FileError),
    /// The config's `admin.listen` cannot be reached as it is.
    #[error("the config's admin listen address `{listen}` {why}")]
    Listen {
        /// The address as configured.
        listen: String,
        /// What is wrong with it.
        why: &'static str,
    },
}

/// ` (hint)`, or nothing.
fn in_parens(hint: &Option<String>) -> String {
    hint.as_deref()
        .map(|hint| format!(" ({hint})"))
        .unwrap_or_default()
}

/// Why the config's `admin.token_file` was not read; each names the file.
#[derive(Debug, thiserror::Error)]
pub enum ConfigTokenError {
    /// It could not be looked at, opened or read.
    #[error("the config's admin token file {}: {error}", path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// What failed.
        error: std::io::Error,
    },
    /// It is a symlink.
    #[error("the config's admin token file {} is a symlink; not read", path.display())]
    Symlink {
        /// The file.
        path: PathBuf,
    },
    /// It is a directory, FIFO, device or socket.
    #[error("the config's admin token file {} is not a regular file; not read", path.display())]
    NotRegular {
        /// The file.
        path: PathBuf,
    },
    /// Group or others have some permission on it.
    #[error("the config's admin token file {} is open to group or others (mode {mode:04o}); not read (chmod 600 it)", path.display())]
    Open {
        /// The file.
        path: PathBuf,
        /// Its permission bits.
        mode: u32,
    },
    /// What was opened is not what was checked.
    #[error("the config's admin token file {} changed while it was being opened; not read", path.display())]
    Swapped {
        /// The file.
        path: PathBuf,
    },
}

/// Where the admin API listens.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AdminTarget {
    /// `host:port`.
    Tcp(String),
    /// A Unix socket.
    Unix(PathBuf),
}

impl AdminTarget {
    /// Parses `http://host:port`, `host:port` or `unix:/path`. A TCP URL has no
    /// path (a single trailing `/` is allowed), query or fragment: the client
    /// always asks for `/v1/...` itself.
    pub fn parse(url: &str) -> Result<Self, AdminError> {
        let bad = || AdminError::BadUrl {
            url: url.to_string(),
        };
        if let Some(path) = url.strip_prefix("unix:") {
            if path.is_empty() {
                return Err(bad());
            }
            return Ok(AdminTarget::Unix(path.into()));
        }
        if url.starts_with("https://") {
            return Err(bad());
        }
        let rest = url.strip_prefix("http://").unwrap_or(url);
        let authority = rest.strip_suffix('/').unwrap_or(rest);
        if authority.contains('/') {
            return Err(AdminError::UrlPath {
                url: url.to_string(),
            });
        }
        if authority.is_empty()
            || authority.contains(['?', '#', '@'])
            || authority.chars().any(char::is_whitespace)
        {
            return Err(bad());
        }
        Ok(AdminTarget::Tcp(authority.to_string()))
    }
}

/// A client of one admin API, holding its bearer token.
#[derive(Clone)]
pub struct AdminClient {
    url: String,
    target: AdminTarget,
    token: String,
}

impl std::fmt::Debug for AdminClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AdminClient")
            .field("url", &self.url)
            .field("target", &self.target)
            .finish_non_exhaustive()
    }
}

impl AdminClient {
    /// `url`: `http://host:port`, `host:port`, or `unix:/path`.
    pub fn new(url: &str, token: String) -> Result<Self, AdminError> {
        Ok(Self {
            url: url.to_string(),
            target: AdminTarget::parse(url)?,
            token,
        })
    }

    /// The URL as given.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// Sends one request and reads the answer: its status and its body as JSON
    /// (`Value::Null` when the body is empty or not JSON).
    pub async fn call(
        &self,
        method: Method,
        path: &str,
        body: Option<Value>,
    ) -> Result<(StatusCode, Value), AdminError> {
        tokio::time::timeout(ADMIN_TIMEOUT, self.call_once(method, path, body))
            .await
            .map_err(|_| AdminError::Timeout {
                url: self.url.clone(),
            })?
    }

    async fn call_once(
        &self,
        method: Method,
        path: &str,
        body: Option<Value>,
    ) -> Result<(StatusCode, Value), AdminError> {
        let unreachable = |error: std::io::Error| AdminError::Unreachable {
            url: self.url.clone(),
            error,
        };
        let (host, mut sender) = match &self.target {
            AdminTarget::Tcp(addr) => {
                let stream = TcpStream::connect(addr).await.map_err(unreachable)?;
                (addr.clone(), handshake(stream).await?)
            }
            AdminTarget::Unix(path) => {
                let stream = tokio::net::UnixStream::connect(path)
                    .await
                    .map_err(unreachable)?;
                ("localhost".to_string(), handshake(stream).await?)
            }
        };
        let http_error = |message: String| AdminError::Http {
            url: self.url.clone(),
            message,
        };
        let payload = body.map(|b| b.to_string()).unwrap_or_default();
        let request = Request::builder()
            .method(method)
            .uri(path)
            .header(http::header::HOST, host)
            .header(
                http::header::AUTHORIZATION,
                format!("Bearer {}", self.token),
            )
            .header(http::header::CONTENT_TYPE, "application/json")
            .body(Full::new(Bytes::from(payload)))
            .map_err(|e| http_error(e.to_string()))?;
        let response = sender
            .send_request(request)
            .await
            .map_err(|e| http_error(e.to_string()))?;
        let status = response.status();
        let bytes = http_body_util::Limited::new(response.into_body(), MAX_ADMIN_ANSWER)
            .collect()
            .await
            .map_err(|e| http_error(e.to_string()))?
            .to_bytes();
        let value = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
        Ok((status, value))
    }
}

/// HTTP/1.1 handshake over `stream`; the connection is driven in the background.
pub async fn handshake<S>(
    stream: S,
) -> Result<hyper::client::conn::http1::SendRequest<Full<Bytes>>, AdminError>
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let (sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .map_err(|e| AdminError::Http {
            url: "admin API handshake".into(),
            message: e.to_string(),
        })?;
    tokio::spawn(conn);
    Ok(sender)
}

/// The admin token: the contents of `file` (`--admin-token-file`) if given, else
/// `$TOLLGATE_ADMIN_TOKEN`; trimmed. [`AdminError::NoToken`] if neither is there.
pub fn admin_token(file: Option<&Path>) -> Result<String, AdminError> {
    let token = match file {
        Some(path) => std::fs::read_to_string(path).map_err(|error| AdminError::TokenFile {
            path: path.to_path_buf(),
            error,
        })?,
        None => std::env::var(ADMIN_TOKEN_ENV).map_err(|_| AdminError::NoToken)?,
    };
    Ok(token.trim().to_string())
}

/// The client `tollgate approvals` uses: for `admin` (`--admin`), for the
/// admin API of an explicitly given `config`, or for the built-in default
/// address; the token from `token_file`, `$TOLLGATE_ADMIN_TOKEN` or (only with
/// `config` and without `admin`) the config's private token file. See the
/// module docs for why no other config is read.
pub fn discover(
    admin: Option<&str>,
    token_file: Option<&Path>,
    config: Option<&Path>,
) -> Result<AdminClient, AdminError> {
    let given = match admin_token(token_file) {
        Ok(token) => Some(token),
        Err(AdminError::NoToken) => None,
        Err(err) => return Err(err),
    };
    let missing = |hint: Option<String>| AdminError::NoTokenFound { hint };
    let (url, token) = match (admin, config) {
        (Some(url), _) => (url.to_string(), given.ok_or_else(|| missing(None))?),
        (None, None) => {
            let token = given.ok_or_else(|| {
                missing(Some(
                    "or --config FILE to use that config's admin.listen and admin.token_file; \
                     ./tollgate.yaml is not read implicitly"
                        .into(),
                ))
            })?;
            (config_admin_url(DEFAULT_ADMIN_LISTEN)?, token)
        }
        (None, Some(path)) => {
            let config = Config::load_settings(Some(path))?;
            let url = config_admin_url(&config.admin_listen)?;
            let token = match given {
                Some(token) => token,
                None => read_config_token(&config.admin_token_file)
                    .map_err(|why| missing(Some(why.to_string())))?,
            };
            (url, token)
        }
    };
    AdminClient::new(&url, token)
}

/// Reads the config's `admin.token_file`, trimmed, if it is a regular file (not
/// a symlink) with no permission bits for group or others.
pub fn read_config_token(path: &Path) -> Result<String, ConfigTokenError> {
    use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
    let io = |error: std::io::Error| ConfigTokenError::Io {
        path: path.to_path_buf(),
        error,
    };
    let meta = std::fs::symlink_metadata(path).map_err(io)?;
    if meta.file_type().is_symlink() {
        return Err(ConfigTokenError::Symlink {
            path: path.to_path_buf(),
        });
    }
    if !meta.is_file() {
        return Err(ConfigTokenError::NotRegular {
            path: path.to_path_buf(),
        });
    }
    let private = |meta: &std::fs::Metadata| {
        let mode = meta.mode() & 0o7777;
        if mode & 0o077 == 0 {
            Ok(())
        } else {
            Err(ConfigTokenError::Open {
                path: path.to_path_buf(),
                mode,
            })
        }
    };
    private(&meta)?;
    // Opened without following a symlink or blocking on a FIFO, and checked to be
    // the file just looked at, in case it was swapped in between.
    let mut file = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK)
        .open(path)
        .map_err(io)?;
    let opened = file.metadata().map_err(io)?;
    if (opened.dev(), opened.ino()) != (meta.dev(), meta.ino()) || !opened.is_file() {
        return Err(ConfigTokenError::Swapped {
            path: path.to_path_buf(),
        });
    }
    private(&opened)?;
    let mut text = String::new();
    (&mut file)
        .take(MAX_TOKEN_FILE)
        .read_to_string(&mut text)
        .map_err(io)?;
    Ok(text.trim().to_string())
}

/// The URL to reach an admin API that listens on `listen` (`ip:port` or
/// `unix:/path`); a wildcard address is reached on loopback.
fn config_admin_url(listen: &str) -> Result<String, AdminError> {
    if listen.starts_with("unix:") {
        return Ok(listen.to_string());
    }
    let bad = |why| AdminError::Listen {
        listen: listen.to_string(),
        why,
    };
    let mut addr: SocketAddr = listen.parse().map_err(|_| bad("is not ip:port"))?;
    if addr.port() == 0 {
        return Err(bad("has no fixed port; give --admin URL"));
    }
    if addr.ip().is_unspecified() {
        addr.set_ip(match addr.ip() {
            IpAddr::V4(_) => IpAddr::V4(Ipv4Addr::LOCALHOST),
            IpAddr::V6(_) => IpAddr::V6(Ipv6Addr::LOCALHOST),
        });
    }
    Ok(format!("http://{addr}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn targets() {
        assert_eq!(
            AdminTarget::parse("http://127.0.0.1:3129").ok(),
            Some(AdminTarget::Tcp("127.0.0.1:3129".into()))
        );
        assert_eq!(
            AdminTarget::parse("127.0.0.1:3129/").ok(),
            Some(AdminTarget::Tcp("127.0.0.1:3129".into()))
        );
        assert_eq!(
            AdminTarget::parse("http://[::1]:3129/").ok(),
            Some(AdminTarget::Tcp("[::1]:3129".into()))
        );
        assert_eq!(
            AdminTarget::parse("unix:/run/tollgate/admin.sock").ok(),
            Some(AdminTarget::Unix("/run/tollgate/admin.sock".into()))
        );
        for bad in [
            "https://127.0.0.1:3129",
            "http://",
            "",
            "unix:",
            "http://h:1?x=1",
            "http://user@h:1",
            "h:1#frag",
        ] {
            let err = AdminTarget::parse(bad).err().map(|e| e.to_string());
            assert_eq!(
                err,
                Some(format!(
                    "--admin {bad}: give http://HOST:PORT or unix:/PATH"
                ))
            );
        }
        for bad in [
            "http://h:1/v1",
            "http://h:1/v1/",
            "h:1/v1/approvals",
            "http://h:1//",
        ] {
            let err = AdminTarget::parse(bad).err().map(|e| e.to_string());
            assert_eq!(
                err,
                Some(format!(
                    "--admin {bad}: the admin URL takes no path; give http://HOST:PORT (the client adds /v1/...)"
                ))
            );
        }
    }

    fn private_file(dir: &Path, name: &str, text: &str, mode: u32) -> PathBuf {
        use std::os::unix::fs::PermissionsExt;
        let path = dir.join(name);
        std::fs::write(&path, text).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode)).unwrap();
        path
    }

    #[test]
    fn without_config_the_default_address_and_an_explicit_token() {
        let dir = tempfile::tempdir().unwrap();
        let token = private_file(dir.path(), "token", "tok\n", 0o644);
        let found = discover(None, Some(&token), None).map_err(|e| e.to_string());
        assert_eq!(
            found.as_ref().map(AdminClient::url),
            Ok("http://127.0.0.1:3129")
        );
        // A token file given on the command line is the operator's choice.
        let found = discover(
            Some("unix:/x.sock"),
            Some(&token),
            Some(&dir.path().join("none.yaml")),
        );
        assert_eq!(
            found.map(|c| c.url().to_string()).ok().as_deref(),
            Some("unix:/x.sock")
        );
    }

    #[test]
    fn the_config_token_file_must_be_private_and_regular() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let read = |p: &Path| read_config_token(p).map_err(|e| e.to_string());

        let good = private_file(dir.path(), "good", " the-token \n", 0o600);
        assert_eq!(read(&good), Ok("the-token".to_string()));
        let owner_only = private_file(dir.path(), "ro", "t", 0o400);
        assert_eq!(read(&owner_only), Ok("t".to_string()));

        for mode in [0o644, 0o640, 0o604, 0o620, 0o602, 0o601] {
            let open = private_file(dir.path(), &format!("open{mode:o}"), "t", mode);
            let err = read(&open).unwrap_err();
            assert!(err.contains(&open.display().to_string()), "{err}");
            assert!(err.contains("group or others"), "{err}");
            assert!(err.contains(&format!("mode 0{mode:o}")), "{err}");
        }

        let link = dir.path().join("link");
        std::os::unix::fs::symlink(&good, &link).unwrap();
        let err = read(&link).unwrap_err();
        assert!(
            err.contains("link") && err.contains("is a symlink"),
            "{err}"
        );

        let sub = dir.path().join("sub");
        std::fs::create_dir(&sub).unwrap();
        std::fs::set_permissions(&sub, std::fs::Permissions::from_mode(0o700)).unwrap();
        let err = read(&sub).unwrap_err();
        assert!(err.contains("is not a regular file"), "{err}");

        let fifo = dir.path().join("fifo");
        let name = std::ffi::CString::new(fifo.as_os_str().as_encoded_bytes()).unwrap();
        // SAFETY: `name` is a valid NUL-terminated path.
        assert_eq!(unsafe { libc::mkfifo(name.as_ptr(), 0o600) }, 0);
        let err = read(&fifo).unwrap_err();
        assert!(err.contains("is not a regular file"), "{err}");

        let err = read(&dir.path().join("missing")).unwrap_err();
        assert!(err.contains("missing"), "{err}");
    }

    #[test]
    fn config_admin_addresses() {
        let url = |s: &str| config_admin_url(s).map_err(|e| e.to_string());
        assert_eq!(url("127.0.0.1:3129"), Ok("http://127.0.0.1:3129".into()));
        assert_eq!(url("0.0.0.0:3129"), Ok("http://127.0.0.1:3129".into()));
        assert_eq!(url("[::]:3129"), Ok("http://[::1]:3129".into()));
        assert_eq!(url("unix:/run/t.sock"), Ok("unix:/run/t.sock".into()));
        assert!(url("127.0.0.1:0").is_err_and(|e| e.contains("--admin")));
    }
}
