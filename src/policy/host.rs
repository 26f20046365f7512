//! Host names as policies and requests name them: lower-case, no trailing dot.

use serde::Deserialize;
use std::fmt;
use std::net::IpAddr;

/// Normalizes a request host for matching: lower-case, trailing dot removed,
/// IPv6 brackets removed. Returns `None` for a host that is not a valid DNS name
/// or IP literal.
pub fn normalize_host(raw: &str) -> Option<String> {
    let unbracketed = raw
        .strip_prefix('[')
        .and_then(|h| h.strip_suffix(']'))
        .unwrap_or(raw);
    if let Ok(ip) = unbracketed.parse::<IpAddr>() {
        return Some(ip.to_string());
    }
    let host = raw.strip_suffix('.').unwrap_or(raw).to_ascii_lowercase();
    is_dns_name(&host).then_some(host)
}

/// Letters, digits, hyphens and underscores in dot-separated labels of 1..=63 bytes.
fn is_dns_name(host: &str) -> bool {
    !host.is_empty()
        && host.len() <= 253
        && host.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && label
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        })
}

/// A host in a policy: an exact name, or `*.suffix` matching one or more labels.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum HostPattern {
    /// Matches exactly this (normalized) host.
    Exact(String),
    /// `*.example.com`: stores `.example.com`; matches `a.example.com`, not `example.com`.
    Subdomains(String),
}

impl HostPattern {
    /// Whether a normalized request host matches.
    pub fn matches(&self, host: &str) -> bool {
        match self {
            HostPattern::Exact(h) => h == host,
            HostPattern::Subdomains(suffix) => {
                host.len() > suffix.len() && host.ends_with(suffix.as_str())
            }
        }
    }
}

impl TryFrom<String> for HostPattern {
    type Error = String;

    fn try_from(raw: String) -> Result<Self, String> {
        if let Some(rest) = raw.strip_prefix("*.") {
            return match normalize_host(rest) {
                Some(h) if h.parse::<IpAddr>().is_err() => {
                    Ok(HostPattern::Subdomains(format!(".{h}")))
                }
                _ => Err(format!(
                    "host pattern `{raw}` is not `*.` followed by a domain name"
                )),
            };
        }
        if raw.contains('*') {
            return Err(format!(
                "host pattern `{raw}`: `*` is allowed only as the whole first label, as in `*.example.com`"
            ));
        }
        normalize_host(&raw)
            .map(HostPattern::Exact)
            .ok_or_else(|| format!("host `{raw}` is not a valid host name or IP address"))
    }
}

impl<'de> Deserialize<'de> for HostPattern {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let raw = String::deserialize(d)?;
        HostPattern::try_from(raw).map_err(serde::de::Error::custom)
    }
}

impl fmt::Display for HostPattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            HostPattern::Exact(h) => f.write_str(h),
            HostPattern::Subdomains(s) => write!(f, "*{s}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pat(s: &str) -> HostPattern {
        HostPattern::try_from(s.to_string()).unwrap()
    }

    #[test]
    fn exact_host_is_case_and_trailing_dot_insensitive() {
        let p = pat("API.GitHub.com.");
        assert!(p.matches(&normalize_host("api.github.COM.").unwrap()));
        assert!(!p.matches(&normalize_host("github.com").unwrap()));
    }

    #[test]
    fn wildcard_matches_subdomains_not_apex() {
        let p = pat("*.example.com");
        assert!(p.matches("a.example.com"));
        assert!(p.matches("a.b.example.com"));
        assert!(!p.matches("example.com"));
        assert!(!p.matches("badexample.com"));
    }

    #[test]
    fn rejects_bad_patterns() {
        for bad in [
            "",
            "a..b",
            "*",
            "a.*.com",
            "*.",
            "ex ample.com",
            "*.1.2.3.4",
        ] {
            assert!(HostPattern::try_from(bad.to_string()).is_err(), "{bad}");
        }
    }

    #[test]
    fn normalizes_ip_literals() {
        assert_eq!(normalize_host("[::1]").as_deref(), Some("::1"));
        assert_eq!(normalize_host("127.0.0.1").as_deref(), Some("127.0.0.1"));
    }
}
