//! What CMD sees: the proxy variables, a CA bundle that trusts tollgate, and
//! none of tollgate's own variables.

use std::ffi::OsString;
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

/// Variables that carry the task's proxy URL.
pub const PROXY_VARS: [&str; 6] = [
    "HTTPS_PROXY",
    "HTTP_PROXY",
    "https_proxy",
    "http_proxy",
    "ALL_PROXY",
    "all_proxy",
];
/// Variables that point at the CA bundle.
pub const CA_VARS: [&str; 7] = [
    "SSL_CERT_FILE",
    "REQUESTS_CA_BUNDLE",
    "CURL_CA_BUNDLE",
    "NODE_EXTRA_CA_CERTS",
    "GIT_SSL_CAINFO",
    "PIP_CERT",
    "CARGO_HTTP_CAINFO",
];
/// System root bundles, first found wins (Debian/Ubuntu, Fedora/RHEL, Alpine/macOS-style).
const SYSTEM_BUNDLES: [&str; 3] = [
    "/etc/ssl/certs/ca-certificates.crt",
    "/etc/pki/tls/certs/ca-bundle.crt",
    "/etc/ssl/cert.pem",
];

/// Variables CMD inherits from the launcher; everything else must be passed
/// with `--env`. (Secrets live in the launcher's environment: the env backend's
/// prefix is configurable and static tasks name any variable, so a deny-list
/// cannot be complete.)
pub const INHERITED_VARS: [&str; 14] = [
    "PATH",
    "HOME",
    "USER",
    "LOGNAME",
    "SHELL",
    "TERM",
    "COLORTERM",
    "LANG",
    "LANGUAGE",
    "TZ",
    "TMPDIR",
    "COLUMNS",
    "LINES",
    "NO_COLOR",
];

/// The environment of CMD: the launcher's [`INHERITED_VARS`] and `LC_*`, plus
/// the proxy and CA variables, plus `extra` (`--env`), which wins.
pub fn sandbox_env(
    inherited: impl Iterator<Item = (OsString, OsString)>,
    proxy_url: &str,
    ca_bundle: &Path,
    task_id: &str,
    extra: &[(String, String)],
) -> Vec<(OsString, OsString)> {
    // SECURITY: the launcher's environment may hold the admin token and the
    // env backend's secrets; only a fixed set of harmless variables passes.
    let mut env: Vec<(OsString, OsString)> = inherited
        .filter(|(k, _)| {
            let key = k.to_string_lossy();
            INHERITED_VARS.contains(&key.as_ref()) || key.starts_with("LC_")
        })
        .collect();
    let mut set = |k: &str, v: &OsString| env.push((OsString::from(k), v.clone()));
    let url = OsString::from(proxy_url);
    for var in PROXY_VARS {
        set(var, &url);
    }
    set("NO_PROXY", &OsString::new());
    set("no_proxy", &OsString::new());
    let bundle = ca_bundle.as_os_str().to_os_string();
    for var in CA_VARS {
        set(var, &bundle);
    }
    set("NODE_USE_ENV_PROXY", &OsString::from("1"));
    set("TOLLGATE_TASK", &OsString::from(task_id));
    for (k, v) in extra {
        env.retain(|(key, _)| key != k.as_str());
        env.push((OsString::from(k), OsString::from(v)));
    }
    env
}

/// `HOME`, `USER` and `LOGNAME` of `uid` from the user database; empty if it
/// has no entry.
pub fn user_identity(uid: u32) -> Vec<(&'static str, String)> {
    match passwd_by_uid(uid) {
        Some(entry) => vec![
            ("HOME", entry.home),
            ("USER", entry.name.clone()),
            ("LOGNAME", entry.name),
        ],
        None => Vec::new(),
    }
}

/// One user database entry.
struct PasswdEntry {
    uid: u32,
    gid: u32,
    name: String,
    home: String,
}

fn passwd_by_uid(uid: u32) -> Option<PasswdEntry> {
    passwd_lookup(|entry, buf, found| {
        // SAFETY: getpwuid_r writes into `entry` and `buf` (whose length it is
        // given) and sets `found` to `entry` on success or to null.
        unsafe { libc::getpwuid_r(uid, entry, buf.as_mut_ptr(), buf.len(), found) }
    })
}

fn passwd_by_name(name: &str) -> Option<PasswdEntry> {
    let name = std::ffi::CString::new(name).ok()?;
    passwd_lookup(|entry, buf, found| {
        // SAFETY: as in passwd_by_uid; `name` is a valid C string.
        unsafe { libc::getpwnam_r(name.as_ptr(), entry, buf.as_mut_ptr(), buf.len(), found) }
    })
}

fn passwd_lookup(
    call: impl FnOnce(*mut libc::passwd, &mut [libc::c_char], *mut *mut libc::passwd) -> i32,
) -> Option<PasswdEntry> {
    let mut entry = std::mem::MaybeUninit::<libc::passwd>::uninit();
    let mut buf = vec![0 as libc::c_char; 16 * 1024];
    let mut found: *mut libc::passwd = std::ptr::null_mut();
    if call(entry.as_mut_ptr(), &mut buf, &mut found) != 0 || found.is_null() {
        return None;
    }
    // SAFETY: on success `entry` is initialised and its strings point into `buf`,
    // which is still alive; both are NUL-terminated C strings.
    unsafe {
        let entry = entry.assume_init();
        Some(PasswdEntry {
            uid: entry.pw_uid,
            gid: entry.pw_gid,
            name: std::ffi::CStr::from_ptr(entry.pw_name)
                .to_string_lossy()
                .into_owned(),
            home: std::ffi::CStr::from_ptr(entry.pw_dir)
                .to_string_lossy()
                .into_owned(),
        })
    }
}

/// `--user NAME|UID|UID:GID` as `(uid, gid)`; a name or a lone uid takes the
/// primary group from the user database.
pub fn resolve_user(spec: &str) -> Result<(u32, u32), String> {
    let unknown = || format!("--user {spec}: no such user");
    if let Some((uid, gid)) = spec.split_once(':') {
        let uid = uid
            .parse()
            .map_err(|_| format!("--user {spec}: UID:GID must be numbers"))?;
        let gid = gid
            .parse()
            .map_err(|_| format!("--user {spec}: UID:GID must be numbers"))?;
        return Ok((uid, gid));
    }
    let entry = match spec.parse::<u32>() {
        Ok(uid) => passwd_by_uid(uid).or(Some(PasswdEntry {
            uid,
            gid: uid,
            name: String::new(),
            home: String::new(),
        })),
        Err(_) => passwd_by_name(spec),
    };
    entry.map(|e| (e.uid, e.gid)).ok_or_else(unknown)
}

/// Parses one `--env K=V`, or `--env K`, which passes the launcher's own `$K`.
pub fn parse_env_pair(pair: &str) -> Result<(String, String), String> {
    match pair.split_once('=') {
        Some((k, v)) if !k.is_empty() && !v.contains('\0') => Ok((k.to_string(), v.to_string())),
        None if !pair.is_empty() => std::env::var(pair)
            .map(|v| (pair.to_string(), v))
            .map_err(|_| format!("--env {pair}: ${pair} is not set")),
        _ => Err(format!("--env wants K=V or K, got `{pair}`")),
    }
}

/// Writes the system roots plus `ca_pem` to a world-readable file named after
/// its content (so concurrent runs share it and nothing per run is left behind)
/// and returns its path.
pub fn write_ca_bundle(ca_pem: &str) -> std::io::Result<PathBuf> {
    let system = std::env::var_os("SSL_CERT_FILE")
        .map(PathBuf::from)
        .into_iter()
        .chain(SYSTEM_BUNDLES.iter().map(PathBuf::from))
        .find_map(|path| std::fs::read_to_string(path).ok());
    if system.is_none() {
        tracing::warn!("no system CA bundle found: the sandbox trusts only tollgate's CA");
    }
    let mut bundle = system.unwrap_or_default();
    if !bundle.is_empty() && !bundle.ends_with('\n') {
        bundle.push('\n');
    }
    bundle.push_str("# tollgate MITM CA\n");
    bundle.push_str(ca_pem);
    let digest = crate::audit::chain::sha256(bundle.as_bytes());
    let dir = bundle_dir()?;
    let path = dir.join(format!(
        "ca-bundle-{}.pem",
        &crate::text::hex(&digest)[..16]
    ));
    if std::fs::read(&path).is_ok_and(|existing| existing == bundle.as_bytes()) {
        return Ok(path);
    }
    let mut random = [0u8; 8];
    aws_lc_rs::rand::fill(&mut random).map_err(|_| std::io::Error::other("no randomness"))?;
    let tmp = dir.join(format!(".tmp-{}", crate::text::hex(&random)));
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o644)
        .open(&tmp)?;
    file.write_all(bundle.as_bytes())?;
    file.sync_all()?;
    std::fs::rename(&tmp, &path)?;
    Ok(path)
}

/// `$TMPDIR/tollgate-<uid>`: created 0755 if absent; refused if it is a symlink,
/// owned by someone else, or writable by others.
fn bundle_dir() -> std::io::Result<PathBuf> {
    use std::os::unix::fs::{DirBuilderExt, MetadataExt};
    // SAFETY: geteuid has no preconditions and cannot fail.
    let uid = unsafe { libc::geteuid() };
    let dir = std::env::temp_dir().join(format!("tollgate-{uid}"));
    match std::fs::DirBuilder::new().mode(0o755).create(&dir) {
        Ok(()) => {}
        Err(err) if err.kind() == std::io::ErrorKind::AlreadyExists => {}
        Err(err) => return Err(err),
    }
    let meta = std::fs::symlink_metadata(&dir)?;
    if !meta.is_dir() || meta.uid() != uid || meta.mode() & 0o022 != 0 {
        return Err(std::io::Error::other(format!(
            "{} is not a directory owned by uid {uid} and writable only by it",
            dir.display()
        )));
    }
    Ok(dir)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_harmless_variables_reach_the_sandbox() {
        let inherited = vec![
            ("PATH".into(), "/bin".into()),
            ("LC_ALL".into(), "C.UTF-8".into()),
            ("TOLLGATE_ADMIN_TOKEN".into(), "admin-secret".into()),
            ("TOLLGATE_SECRET_GITHUB".into(), "ghp_real".into()),
            ("MYSEC_GH".into(), "ghp_other_prefix".into()),
            ("CI42_PROXY_TOKEN".into(), "static-task-token".into()),
            ("https_proxy".into(), "http://elsewhere:1".into()),
            ("no_proxy".into(), "*".into()),
        ];
        let env = sandbox_env(
            inherited.into_iter(),
            "http://t:tok@127.0.0.1:3128",
            Path::new("/b.pem"),
            "t",
            &[("FOO".into(), "bar".into())],
        );
        let get = |k: &str| {
            env.iter()
                .filter(|(key, _)| key == k)
                .map(|(_, v)| v.to_string_lossy().into_owned())
                .collect::<Vec<_>>()
        };
        assert!(get("TOLLGATE_ADMIN_TOKEN").is_empty());
        assert!(get("TOLLGATE_SECRET_GITHUB").is_empty());
        assert!(get("MYSEC_GH").is_empty(), "any env-backend prefix");
        assert!(
            get("CI42_PROXY_TOKEN").is_empty(),
            "static task token variables"
        );
        assert_eq!(get("LC_ALL"), vec!["C.UTF-8"]);
        assert_eq!(get("https_proxy"), vec!["http://t:tok@127.0.0.1:3128"]);
        assert_eq!(get("no_proxy"), vec![""]);
        assert_eq!(get("NODE_EXTRA_CA_CERTS"), vec!["/b.pem"]);
        assert_eq!(get("PATH"), vec!["/bin"]);
        assert_eq!(get("FOO"), vec!["bar"]);
        assert_eq!(get("TOLLGATE_TASK"), vec!["t"]);
    }

    #[test]
    fn users_resolve_by_name_and_number() {
        assert_eq!(resolve_user("root").unwrap(), (0, 0));
        assert_eq!(resolve_user("0").unwrap(), (0, 0));
        assert_eq!(resolve_user("1234:5678").unwrap(), (1234, 5678));
        assert!(resolve_user("no-such-user-xyz").is_err());
        assert!(resolve_user("a:b").is_err());
    }

    #[test]
    fn root_has_an_identity() {
        let identity = user_identity(0);
        assert!(
            identity.contains(&("USER", "root".to_string())),
            "{identity:?}"
        );
    }

    #[test]
    fn env_pairs() {
        assert_eq!(parse_env_pair("A=b=c").unwrap(), ("A".into(), "b=c".into()));
        assert!(parse_env_pair("=x").is_err());
        assert!(parse_env_pair("").is_err());
        assert!(parse_env_pair("TOLLGATE_SURELY_UNSET_VARIABLE").is_err());
        assert_eq!(parse_env_pair("PATH").unwrap().0, "PATH");
    }
}
