//! Where a request goes: the host and port it names (URL, `Host`,
//! `:authority`), parsed strictly and, inside an intercepted tunnel, checked
//! against the CONNECT target.

use super::context::RequestCtx;
use crate::body::RequestBody;
use crate::error::{Reason, Refusal};
use crate::net::authority::{host_header, Authority, PortRule};
use crate::policy::Scheme;
use http::{HeaderMap, Request};

/// Where one request goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    /// `https` inside an intercepted tunnel, else `http`.
    pub scheme: Scheme,
    /// Host, normalized.
    pub host: String,
    /// Port.
    pub port: u16,
}

impl Target {
    /// `host[:port]` for the upstream URI.
    pub fn authority(&self) -> String {
        authority_for(&self.host, self.port, self.scheme)
    }
}

/// The destination phase: the host and port `req` is for, checked against the
/// tunnel target and written into the record.
pub fn request_target(
    ctx: &mut RequestCtx<'_>,
    req: &Request<RequestBody>,
) -> Result<Target, Refusal> {
    let (host, port) = destination(ctx.conn.tunnel_target.as_ref(), req.uri(), req.headers())?;
    ctx.log.record.host.clone_from(&host);
    ctx.log.record.port = port;
    Ok(Target {
        scheme: ctx.conn.scheme(),
        host,
        port,
    })
}

/// [`request_destination`] on the parts of the request it reads. Every
/// authority is parsed strictly ([`Authority::parse`]): 400 when malformed.
fn destination(
    tunnel_target: Option<&(String, u16)>,
    uri: &http::Uri,
    headers: &HeaderMap,
) -> Result<(String, u16), Refusal> {
    let bad = |msg: String| Refusal::new(Reason::BadRequest, msg);
    // SECURITY: one Host header, naming one host: with two, which one counts
    // would depend on who reads the request (tollgate, or the upstream).
    let host_header = host_header(headers).map_err(|e| bad(format!("the Host header {e}")))?;
    let parse_host_header = |value: &str, ports| {
        Authority::parse(value, ports).map_err(|e| bad(format!("the Host header {e}")))
    };
    match tunnel_target {
        Some((target_host, target_port)) => {
            let ports = PortRule::Default(Scheme::Https.default_port());
            let mut named = Vec::with_capacity(2);
            if let Some(a) = uri.authority() {
                named.push(
                    Authority::parse(a.as_str(), ports)
                        .map_err(|e| bad(format!("the request's authority {e}")))?,
                );
            }
            if let Some(value) = host_header {
                named.push(parse_host_header(value, ports)?);
            }
            if named.is_empty() {
                return Err(bad("the request names no host".into()));
            }
            // SECURITY: Host / :authority must equal the CONNECT target, or a client
            // could reach any host through a tunnel that was allowed for one.
            for authority in &named {
                if authority.host() != target_host || authority.port() != *target_port {
                    return Err(Refusal::new(
                        Reason::HostMismatch,
                        format!("this tunnel is for {target_host}:{target_port}, not {authority}"),
                    ));
                }
            }
            Ok((target_host.clone(), *target_port))
        }
        None => {
            if uri.scheme_str() != Some("http") {
                return Err(bad(
                    "send absolute-form http:// URLs, or CONNECT for https".into()
                ));
            }
            let ports = PortRule::Default(Scheme::Http.default_port());
            let authority = uri
                .authority()
                .ok_or_else(|| bad("the request URL has no host".into()))?;
            let authority = Authority::parse(authority.as_str(), ports)
                .map_err(|e| bad(format!("the request URL {e}")))?;
            // The URL names the destination and the Host header is not forwarded
            // (forward sets it from the URL), yet a malformed one is refused too.
            if let Some(value) = host_header {
                parse_host_header(value, ports)?;
            }
            Ok(authority.into_parts())
        }
    }
}

/// `host[:port]` for the upstream URI, bracketing IPv6 and omitting default ports.
pub fn authority_for(host: &str, port: u16, scheme: Scheme) -> String {
    Authority::for_url(host, port, scheme.default_port())
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::{header, HeaderValue};

    fn headers(hosts: &[&str]) -> HeaderMap {
        let mut headers = HeaderMap::new();
        for host in hosts {
            headers.append(header::HOST, HeaderValue::from_str(host).unwrap());
        }
        headers
    }

    fn refused(outcome: Result<(String, u16), Refusal>) -> Reason {
        match outcome {
            Ok(dest) => panic!("accepted: {dest:?}"),
            Err(refusal) => refusal.reason,
        }
    }

    #[test]
    fn requests_in_a_tunnel_must_name_its_target_once() {
        let target = ("api.github.com".to_string(), 443);
        let origin: http::Uri = "/repos".parse().unwrap();
        let in_tunnel =
            |uri: &http::Uri, hosts: &[&str]| destination(Some(&target), uri, &headers(hosts));
        assert_eq!(
            in_tunnel(&origin, &["API.github.com.:443"]).unwrap(),
            target
        );
        assert_eq!(in_tunnel(&origin, &["api.github.com"]).unwrap(), target);
        // HTTP/2: `:authority` plus one `host` naming the same target.
        let h2: http::Uri = "https://api.github.com/repos".parse().unwrap();
        assert_eq!(in_tunnel(&h2, &["api.github.com"]).unwrap(), target);
        assert_eq!(in_tunnel(&h2, &[]).unwrap(), target);

        for hosts in [
            &["api.github.com", "evil.test"][..],
            &["api.github.com", "api.github.com"],
            &["api.github.com, evil.test"],
            &["api.github.com:+443"],
            &["api.github.com:0443x"],
            &["user@api.github.com"],
            &[""],
        ] {
            assert_eq!(
                refused(in_tunnel(&origin, hosts)),
                Reason::BadRequest,
                "{hosts:?}"
            );
        }
        assert_eq!(
            refused(in_tunnel(&h2, &["a.test", "b.test"])),
            Reason::BadRequest
        );
        assert_eq!(refused(in_tunnel(&origin, &[])), Reason::BadRequest);
        assert_eq!(
            refused(in_tunnel(&origin, &["evil.test"])),
            Reason::HostMismatch
        );
        assert_eq!(
            refused(in_tunnel(&origin, &["api.github.com:8443"])),
            Reason::HostMismatch
        );
        assert_eq!(
            refused(in_tunnel(&h2, &["evil.test"])),
            Reason::HostMismatch
        );
    }

    #[test]
    fn absolute_form_requests_are_parsed_strictly() {
        let plain = |uri: &str, hosts: &[&str]| {
            destination(None, &uri.parse::<http::Uri>().unwrap(), &headers(hosts))
        };
        assert_eq!(
            plain("http://API.test.:8080/x", &["api.test:8080"]).unwrap(),
            ("api.test".into(), 8080)
        );
        assert_eq!(plain("http://a.test/", &[]).unwrap(), ("a.test".into(), 80));
        assert_eq!(
            plain("http://[::1]:81/", &["[::1]:81"]).unwrap(),
            ("::1".into(), 81)
        );
        // The URL names the destination; a different, well-formed Host is not
        // forwarded and not refused.
        assert_eq!(
            plain("http://a.test/", &["b.test"]).unwrap(),
            ("a.test".into(), 80)
        );
        for (uri, hosts) in [
            ("http://a.test/", &["a.test", "evil.test"][..]),
            ("http://a.test/", &["a.test, evil.test"]),
            ("http://a.test/", &["a.test:+80"]),
            ("http://a.test:+80/", &[]),
            ("http://a.test:0/", &[]),
            ("http://a.test:0x50/", &[]),
            ("http://user@a.test/", &[]),
            ("http://2130706433/", &[]),
            ("https://a.test/", &[]),
            ("/", &["a.test"]),
        ] {
            assert_eq!(
                refused(plain(uri, hosts)),
                Reason::BadRequest,
                "{uri} {hosts:?}"
            );
        }
    }

    #[test]
    fn upstream_authorities_omit_default_ports() {
        assert_eq!(authority_for("::1", 8080, Scheme::Http), "[::1]:8080");
        assert_eq!(authority_for("a.test", 443, Scheme::Https), "a.test");
    }
}
