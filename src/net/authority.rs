//! Authorities a peer names (`host[:port]`): the CONNECT target, `Host`,
//! `:authority`, the authority of an absolute-form URL, the Host of a request
//! caught on port 80. One strict parser for all of them, so the host a policy
//! checks is the host tollgate connects to.
//!
//! SECURITY: every form two parsers could read differently is refused rather
//! than guessed at: userinfo (`user@`), lists (`a.test, b.test`), repeated
//! `Host` headers, signed, spaced, hexadecimal, empty or out-of-range ports, IPv6
//! without brackets, and names that a resolver would read as a numeric IPv4
//! address (`2130706433`, `0x7f.1`, `01.2.3.4`).

use crate::policy::normalize_host;
use http::header::HOST;
use http::{HeaderMap, Uri};
use std::fmt;
use std::net::{Ipv4Addr, Ipv6Addr};

/// A host and port as a peer named them, checked and normalized.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Authority {
    host: String,
    port: u16,
}

/// What to do with an authority that names no port.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PortRule {
    /// A CONNECT target: the port must be written out.
    Required,
    /// Host, `:authority`, URLs: absent means this port (the scheme's default).
    Default(u16),
}

/// Why an authority was refused. `Display` is a phrase that completes a sentence
/// such as "the Host header ...".
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AuthorityError {
    /// Nothing where a host was expected.
    Empty,
    /// `user@host` or `user:pw@host`.
    UserInfo,
    /// `a.test, b.test`.
    List,
    /// More than one `Host` header.
    Repeated,
    /// A `Host` header that is not visible ASCII.
    NotText,
    /// Not a DNS name, an IPv4 address or a bracketed IPv6 address.
    Host,
    /// An IPv6 address without its brackets.
    UnbracketedIpv6,
    /// A name whose last label is a number: resolvers read it as an IPv4 address.
    NumericHost,
    /// No port where one is required.
    MissingPort,
    /// A port that is not plain digits for 1..=65535.
    Port,
    /// A CONNECT target that is not just `host:port` (a scheme or a path).
    NotAuthorityForm,
}

impl fmt::Display for AuthorityError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            AuthorityError::Empty => "names no host",
            AuthorityError::UserInfo => "carries userinfo (`user@`), which tollgate refuses",
            AuthorityError::List => "names a list of hosts instead of one",
            AuthorityError::Repeated => "is sent more than once",
            AuthorityError::NotText => "is not plain text",
            AuthorityError::Host => "does not name a valid host name or IP address",
            AuthorityError::UnbracketedIpv6 => "names an IPv6 address without its brackets",
            AuthorityError::NumericHost => {
                "names a host ending in a number that is not a dotted-decimal IPv4 address"
            }
            AuthorityError::MissingPort => "has no port",
            AuthorityError::Port => "has a port that is not plain digits from 1 to 65535",
            AuthorityError::NotAuthorityForm => "is not of the form host:port",
        })
    }
}

impl std::error::Error for AuthorityError {}

impl Authority {
    /// Parses `host[:port]` strictly: a DNS name, an IPv4 address or an IPv6
    /// address in brackets, then optionally `:` and 1..=65535 in ASCII digits.
    /// The host comes out normalized (see [`normalize_host`]).
    pub fn parse(raw: &str, ports: PortRule) -> Result<Self, AuthorityError> {
        if raw.is_empty() {
            return Err(AuthorityError::Empty);
        }
        if raw.contains('@') {
            return Err(AuthorityError::UserInfo);
        }
        if raw.contains(',') {
            return Err(AuthorityError::List);
        }
        let (host, port) = match raw.strip_prefix('[') {
            Some(rest) => {
                let (inside, after) = rest.split_once(']').ok_or(AuthorityError::Host)?;
                let ip = inside
                    .parse::<Ipv6Addr>()
                    .map_err(|_| AuthorityError::Host)?;
                let port = match after {
                    "" => None,
                    _ => Some(after.strip_prefix(':').ok_or(AuthorityError::Host)?),
                };
                (ip.to_string(), port)
            }
            None => {
                let (host, port) = match raw.split_once(':') {
                    Some((host, port)) => (host, Some(port)),
                    None => (raw, None),
                };
                if port.is_some_and(|p| p.contains(':')) {
                    return Err(AuthorityError::UnbracketedIpv6);
                }
                (parse_unbracketed_host(host)?, port)
            }
        };
        let port = match (port, ports) {
            (Some(digits), _) => parse_port(digits)?,
            (None, PortRule::Default(port)) if port != 0 => port,
            (None, _) => return Err(AuthorityError::MissingPort),
        };
        Ok(Authority { host, port })
    }

    /// The target of a CONNECT request: authority-form (`host:port`, nothing
    /// else), port required.
    pub fn from_connect_uri(uri: &Uri) -> Result<Self, AuthorityError> {
        if uri.scheme().is_some() || uri.path_and_query().is_some() {
            return Err(AuthorityError::NotAuthorityForm);
        }
        let authority = uri.authority().ok_or(AuthorityError::Empty)?;
        Authority::parse(authority.as_str(), PortRule::Required)
    }

    /// The normalized host: lower-case, no trailing dot, IPv6 without brackets.
    pub fn host(&self) -> &str {
        &self.host
    }

    /// The port, in 1..=65535.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// Host and port, taken apart.
    pub fn into_parts(self) -> (String, u16) {
        (self.host, self.port)
    }

    /// `host[:port]` for a URL: the port is left out when it is `default_port`.
    pub fn for_url(host: &str, port: u16, default_port: u16) -> String {
        url_authority(host, (port != default_port).then_some(port))
    }
}

/// `host:port`, with brackets around an IPv6 host: parsing it again gives the
/// same authority.
impl fmt::Display for Authority {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", bracketed(&self.host), self.port)
    }
}

/// The one `Host` header of a request, if any. Two of them are refused: which
/// one counts would depend on who reads the request.
pub fn host_header(headers: &HeaderMap) -> Result<Option<&str>, AuthorityError> {
    let mut values = headers.get_all(HOST).iter();
    let Some(first) = values.next() else {
        return Ok(None);
    };
    if values.next().is_some() {
        return Err(AuthorityError::Repeated);
    }
    first
        .to_str()
        .map(Some)
        .map_err(|_| AuthorityError::NotText)
}

/// Parses a host alone (no port), as in a TLS server name: a DNS name or an IP
/// address (IPv6 with or without brackets), normalized.
pub fn parse_host(raw: &str) -> Result<String, AuthorityError> {
    if let Some(inside) = raw.strip_prefix('[').and_then(|r| r.strip_suffix(']')) {
        return inside
            .parse::<Ipv6Addr>()
            .map(|ip| ip.to_string())
            .map_err(|_| AuthorityError::Host);
    }
    if let Ok(ip) = raw.parse::<Ipv6Addr>() {
        return Ok(ip.to_string());
    }
    if raw.contains('@') {
        return Err(AuthorityError::UserInfo);
    }
    if raw.contains(':') {
        return Err(AuthorityError::Host);
    }
    parse_unbracketed_host(raw)
}

/// A DNS name or a dotted-decimal IPv4 address (no colon, no brackets).
fn parse_unbracketed_host(raw: &str) -> Result<String, AuthorityError> {
    if raw.is_empty() {
        return Err(AuthorityError::Empty);
    }
    if let Ok(ip) = raw.parse::<Ipv4Addr>() {
        return Ok(ip.to_string());
    }
    if raw.starts_with('[') || raw.ends_with(']') {
        return Err(AuthorityError::Host);
    }
    let host = normalize_host(raw).ok_or(AuthorityError::Host)?;
    // SECURITY: `inet_aton`-style resolvers read `2130706433`, `0x7f.1` or
    // `0177.0.0.1` as 127.0.0.1; a policy reads them as names. No DNS top-level
    // label is numeric, so such a name is refused, not resolved.
    let last = host.rsplit('.').next().unwrap_or(&host);
    if ends_in_number(last) {
        return Err(AuthorityError::NumericHost);
    }
    Ok(host)
}

/// Decimal digits, or `0x` followed by hex digits (none included): what the
/// WHATWG URL standard treats as an IPv4 number.
fn ends_in_number(label: &str) -> bool {
    if !label.is_empty() && label.bytes().all(|b| b.is_ascii_digit()) {
        return true;
    }
    label
        .strip_prefix("0x")
        .is_some_and(|hex| hex.bytes().all(|b| b.is_ascii_hexdigit()))
}

/// 1..=65535 in ASCII digits only: no sign, no space, no hex.
fn parse_port(digits: &str) -> Result<u16, AuthorityError> {
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return Err(AuthorityError::Port);
    }
    // Leading zeros are plain digits too (`0443` is 443); the length bound
    // keeps the arithmetic in range.
    let significant = digits.trim_start_matches('0');
    if significant.len() > 5 {
        return Err(AuthorityError::Port);
    }
    let value = significant
        .bytes()
        .fold(0u32, |acc, b| acc * 10 + u32::from(b - b'0'));
    match u16::try_from(value) {
        Ok(port) if port != 0 => Ok(port),
        _ => Err(AuthorityError::Port),
    }
}

/// `host[:port]` as a URL writes it: an IPv6 host in brackets, `:port` only when
/// `port` is given.
pub fn url_authority(host: &str, port: Option<impl fmt::Display>) -> String {
    let host = bracketed(host);
    match port {
        Some(port) => format!("{host}:{port}"),
        None => host.into_owned(),
    }
}

/// An IPv6 host in brackets (once: a host already in brackets stays as it is),
/// any other host as it is.
fn bracketed(host: &str) -> std::borrow::Cow<'_, str> {
    if host.contains(':') && !host.starts_with('[') {
        format!("[{host}]").into()
    } else {
        host.into()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const HTTPS: PortRule = PortRule::Default(443);
    const HTTP: PortRule = PortRule::Default(80);

    fn ok(raw: &str, ports: PortRule) -> (String, u16) {
        match Authority::parse(raw, ports) {
            Ok(a) => a.into_parts(),
            Err(e) => panic!("{raw:?} refused: {e}"),
        }
    }

    fn err(raw: &str, ports: PortRule) -> AuthorityError {
        match Authority::parse(raw, ports) {
            Ok(a) => panic!("{raw:?} accepted as {a}"),
            Err(e) => e,
        }
    }

    #[test]
    fn valid_forms_parse_and_normalize() {
        assert_eq!(ok("API.test.:8443", HTTPS), ("api.test".into(), 8443));
        assert_eq!(ok("api.test", HTTPS), ("api.test".into(), 443));
        assert_eq!(ok("api.test", HTTP), ("api.test".into(), 80));
        assert_eq!(ok("[::1]:80", HTTP), ("::1".into(), 80));
        assert_eq!(ok("[::1]", HTTPS), ("::1".into(), 443));
        assert_eq!(
            ok("[2001:DB8::0:1]:8080", HTTP),
            ("2001:db8::1".into(), 8080)
        );
        assert_eq!(ok("1.2.3.4", HTTP), ("1.2.3.4".into(), 80));
        assert_eq!(ok("1.2.3.4:65535", HTTP), ("1.2.3.4".into(), 65535));
        assert_eq!(ok("api.test:1", PortRule::Required), ("api.test".into(), 1));
        assert_eq!(
            ok("api.test:0443", PortRule::Required),
            ("api.test".into(), 443)
        );
        assert_eq!(ok("localhost:8080", HTTP), ("localhost".into(), 8080));
        assert_eq!(ok("my_host-1.test", HTTP), ("my_host-1.test".into(), 80));
        assert_eq!(ok("a1.b2.c3x", HTTP), ("a1.b2.c3x".into(), 80));
    }

    #[test]
    fn ports_must_be_plain_digits_in_range() {
        for raw in [
            "api.test:+443",
            "api.test:-443",
            "api.test:0",
            "api.test:00",
            "api.test:65536",
            "api.test:99999999999999999999",
            "api.test:0x1bb",
            "api.test: 443",
            "api.test:443 ",
            "api.test:",
            "api.test:44 3",
            "api.test:443\t",
            "api.test:４４３",
            "[::1]:+80",
            "[::1]:",
            "1.2.3.4:0",
        ] {
            assert_eq!(
                err(raw, PortRule::Required),
                AuthorityError::Port,
                "{raw:?}"
            );
            assert_eq!(err(raw, HTTPS), AuthorityError::Port, "{raw:?}");
        }
    }

    #[test]
    fn a_connect_target_needs_its_port() {
        assert_eq!(
            err("api.test", PortRule::Required),
            AuthorityError::MissingPort
        );
        assert_eq!(
            err("[::1]", PortRule::Required),
            AuthorityError::MissingPort
        );
        assert_eq!(
            err("api.test", PortRule::Default(0)),
            AuthorityError::MissingPort
        );
    }

    #[test]
    fn userinfo_is_refused() {
        for raw in [
            "user@api.test:443",
            "user:pw@api.test:443",
            "@api.test:443",
            "api.test:443@evil.test",
            "[::1]@evil.test",
        ] {
            assert_eq!(
                err(raw, PortRule::Required),
                AuthorityError::UserInfo,
                "{raw:?}"
            );
        }
    }

    #[test]
    fn lists_and_junk_are_refused() {
        assert_eq!(err("a.test, b.test", HTTP), AuthorityError::List);
        assert_eq!(err("a.test,b.test:443", HTTP), AuthorityError::List);
        assert_eq!(err("", HTTP), AuthorityError::Empty);
        assert_eq!(err(":443", HTTP), AuthorityError::Empty);
        for raw in [
            " api.test",
            "api.test ",
            "api .test",
            "api..test",
            "api.test..",
            ".",
            "api.test/",
            "api.test/path",
            "api.test?",
            "api.test#x",
            "a%2etest",
            "[1.2.3.4]:80",
            "[::1",
            "::1]",
            "[::1]x",
            "[::1]:80]",
            "[fe80::1%25eth0]:80",
            "exämple.test",
            "a\0.test",
        ] {
            assert!(Authority::parse(raw, HTTP).is_err(), "{raw:?}");
        }
        assert_eq!(err("::1", HTTP), AuthorityError::UnbracketedIpv6);
        assert_eq!(
            err("2001:db8::1:443", HTTP),
            AuthorityError::UnbracketedIpv6
        );
    }

    #[test]
    fn names_a_resolver_would_read_as_numbers_are_refused() {
        for raw in [
            "2130706433",
            "0x7f000001",
            "0x7f.1",
            "0177.0.0.1",
            "01.2.3.4",
            "1.2.3",
            "1.2.3.4.5",
            "256.1.1.1",
            "api.test.0x",
            "api.123",
        ] {
            assert_eq!(err(raw, HTTP), AuthorityError::NumericHost, "{raw:?}");
        }
    }

    #[test]
    fn connect_targets_are_authority_form() {
        let target = |s: &str| Authority::from_connect_uri(&s.parse::<Uri>().unwrap());
        assert_eq!(target("api.test:443").unwrap().to_string(), "api.test:443");
        assert_eq!(target("[::1]:8443").unwrap().to_string(), "[::1]:8443");
        assert_eq!(
            target("http://api.test:443/"),
            Err(AuthorityError::NotAuthorityForm)
        );
        assert_eq!(target("/path"), Err(AuthorityError::NotAuthorityForm));
        assert_eq!(target("api.test:+443"), Err(AuthorityError::Port));
        assert_eq!(target("user@api.test:443"), Err(AuthorityError::UserInfo));
        assert_eq!(target("api.test"), Err(AuthorityError::MissingPort));
    }

    #[test]
    fn one_host_header_at_most() {
        let mut headers = HeaderMap::new();
        assert_eq!(host_header(&headers), Ok(None));
        headers.append(HOST, "api.github.com".parse().unwrap());
        assert_eq!(host_header(&headers), Ok(Some("api.github.com")));
        headers.append(HOST, "evil.test".parse().unwrap());
        assert_eq!(host_header(&headers), Err(AuthorityError::Repeated));
        let mut same_twice = HeaderMap::new();
        same_twice.append(HOST, "a.test".parse().unwrap());
        same_twice.append(HOST, "a.test".parse().unwrap());
        assert_eq!(host_header(&same_twice), Err(AuthorityError::Repeated));
        let mut binary = HeaderMap::new();
        binary.append(HOST, http::HeaderValue::from_bytes(b"a\xfe.test").unwrap());
        assert_eq!(host_header(&binary), Err(AuthorityError::NotText));
    }

    #[test]
    fn server_names_parse_as_hosts() {
        assert_eq!(parse_host("API.Test.").unwrap(), "api.test");
        assert_eq!(parse_host("[::1]").unwrap(), "::1");
        assert_eq!(parse_host("::1").unwrap(), "::1");
        assert_eq!(parse_host("1.2.3.4").unwrap(), "1.2.3.4");
        assert!(parse_host("api.test:443").is_err());
        assert!(parse_host("user@api.test").is_err());
        assert!(parse_host("2130706433").is_err());
        assert!(parse_host("").is_err());
    }

    #[test]
    fn urls_leave_out_the_default_port() {
        assert_eq!(Authority::for_url("::1", 8080, 80), "[::1]:8080");
        assert_eq!(Authority::for_url("::1", 80, 80), "[::1]");
        assert_eq!(Authority::for_url("a.test", 443, 443), "a.test");
        assert_eq!(Authority::for_url("a.test", 8443, 443), "a.test:8443");
    }

    /// A DNS label: letters, digits, `-`, `_`, never all digits at the end of a name.
    fn label() -> impl Strategy<Value = String> {
        "[a-zA-Z0-9_-]{0,20}[a-zA-Z_-]".prop_filter("ends in a number", |l| {
            !ends_in_number(&l.to_ascii_lowercase())
        })
    }

    /// Any host the parser accepts, as a peer might write it.
    fn host() -> impl Strategy<Value = String> {
        prop_oneof![
            (prop::collection::vec(label(), 1..5), any::<bool>()).prop_map(|(labels, dot)| {
                let mut name = labels.join(".");
                if dot {
                    name.push('.');
                }
                name
            }),
            any::<Ipv4Addr>().prop_map(|ip| ip.to_string()),
            any::<Ipv6Addr>().prop_map(|ip| format!("[{ip}]")),
        ]
    }

    proptest! {
        #[test]
        fn valid_authorities_round_trip(host in host(), port in 1u16..=65535) {
            let parsed = Authority::parse(&format!("{host}:{port}"), PortRule::Required).unwrap();
            prop_assert_eq!(parsed.port(), port);
            prop_assert!(!parsed.host().bytes().any(|b| b.is_ascii_uppercase()));
            prop_assert!(!parsed.host().ends_with('.'));
            let again = Authority::parse(&parsed.to_string(), PortRule::Required).unwrap();
            prop_assert_eq!(&again, &parsed);
            let without_port = Authority::parse(&host, PortRule::Default(port)).unwrap();
            prop_assert_eq!(without_port, parsed);
        }

        #[test]
        fn signed_spaced_or_foreign_ports_are_refused(
            host in host(),
            port in 0u32..=70000,
            junk in prop_oneof![
                Just("+"), Just("-"), Just(" "), Just("\t"), Just("0x"), Just("x"), Just("e"), Just("_"), Just("."),
            ],
            before in any::<bool>(),
        ) {
            let port = if before { format!("{junk}{port}") } else { format!("{port}{junk}") };
            prop_assert_eq!(
                Authority::parse(&format!("{host}:{port}"), PortRule::Required),
                Err(AuthorityError::Port)
            );
        }

        #[test]
        fn out_of_range_ports_are_refused(host in host(), port in prop_oneof![Just(0u64), 65536u64..]) {
            prop_assert_eq!(
                Authority::parse(&format!("{host}:{port}"), PortRule::Required),
                Err(AuthorityError::Port)
            );
        }

        #[test]
        fn userinfo_is_always_refused(user in "[a-z:%0-9]{0,10}", host in host(), port in 1u16..) {
            prop_assert_eq!(
                Authority::parse(&format!("{user}@{host}:{port}"), PortRule::Required),
                Err(AuthorityError::UserInfo)
            );
        }

        #[test]
        fn spaces_inside_are_refused(host in host(), at in any::<prop::sample::Index>(), port in 1u16..) {
            let mut raw: Vec<char> = format!("{host}:{port}").chars().collect();
            raw.insert(at.index(raw.len() + 1), ' ');
            let raw: String = raw.into_iter().collect();
            prop_assert!(Authority::parse(&raw, PortRule::Required).is_err());
            prop_assert!(Authority::parse(&raw, HTTPS).is_err());
        }

        #[test]
        fn parse_never_panics(raw in any::<String>()) {
            let _ = Authority::parse(&raw, PortRule::Required);
            let _ = Authority::parse(&raw, HTTPS);
            let _ = parse_host(&raw);
        }

        #[test]
        fn near_misses_never_panic(raw in "[-\\[\\]:@,.0-9a-fA-Fx+ ]{0,40}") {
            for ports in [PortRule::Required, HTTP] {
                if let Ok(a) = Authority::parse(&raw, ports) {
                    prop_assert_eq!(Authority::parse(&a.to_string(), PortRule::Required), Ok(a.clone()));
                    prop_assert!(a.port() != 0);
                }
            }
        }
    }
}
