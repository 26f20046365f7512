//! Fuzz target `authority`: [`crate::net::authority`], the one parser for every
//! `host[:port]` a peer names (CONNECT target, Host, `:authority`, URLs).
//!
//! Invariants, for the bytes read as UTF-8 (lossily, and as they are when valid),
//! with the port required and with a default port: parsing never panics; an
//! accepted authority has a port in 1..=65535 and a normalized host (no ASCII
//! upper case, no trailing dot, no `@`, no `,`, no space); written back as
//! `host:port` (brackets for IPv6) it parses to the same authority.

use crate::net::authority::{parse_host, Authority, PortRule};

/// Runs one input.
pub fn run(data: &[u8]) {
    let lossy = String::from_utf8_lossy(data);
    check(&lossy);
    if let Ok(exact) = std::str::from_utf8(data) {
        if exact != lossy {
            check(exact);
        }
    }
}

fn check(raw: &str) {
    // The default port comes from the input too, so 0 and odd ports are tried.
    let default = data_port(raw);
    for ports in [PortRule::Required, PortRule::Default(default)] {
        if let Ok(authority) = Authority::parse(raw, ports) {
            assert_normalized(authority.host());
            assert!(authority.port() >= 1, "port 0 accepted from {raw:?}");
            if ports == PortRule::Required {
                let written_port = raw.rsplit_once(':').map(|(_, p)| p.trim_start_matches('0'));
                assert_eq!(
                    written_port,
                    Some(authority.port().to_string().as_str()),
                    "{raw:?}: a required port must be the one written out"
                );
            }
            let written = authority.to_string();
            let again = Authority::parse(&written, PortRule::Required);
            assert_eq!(again.as_ref(), Ok(&authority), "{raw:?} -> {written:?}");
            let url = Authority::for_url(authority.host(), authority.port(), 443);
            let from_url = Authority::parse(&url, PortRule::Default(443));
            assert_eq!(from_url.as_ref(), Ok(&authority), "{raw:?} -> {url:?}");
        }
    }
    if let Ok(host) = parse_host(raw) {
        assert_normalized(&host);
        let port = default.max(1);
        let joined = Authority::for_url(&host, port, 0);
        let parsed = Authority::parse(&joined, PortRule::Required);
        assert_eq!(
            parsed.map(Authority::into_parts),
            Ok((host.clone(), port)),
            "{raw:?} -> {joined:?}"
        );
    }
}

fn assert_normalized(host: &str) {
    assert!(!host.is_empty(), "empty host accepted");
    assert!(
        !host.bytes().any(|b| b.is_ascii_uppercase()),
        "{host:?} is not lower-case"
    );
    assert!(!host.ends_with('.'), "{host:?} keeps its trailing dot");
    for c in ['@', ',', ' ', '[', ']', '/', '%'] {
        assert!(!host.contains(c), "{host:?} contains {c:?}");
    }
}

/// A port derived from the input's length and first byte: covers 0 and the top.
fn data_port(raw: &str) -> u16 {
    let first = raw.bytes().next().map_or(0, u16::from);
    (raw.len() as u16).wrapping_mul(257).wrapping_add(first)
}

#[cfg(test)]
mod tests {
    use super::run;
    use proptest::prelude::*;

    #[test]
    fn known_tricky_inputs_hold_the_invariants() {
        for raw in [
            "API.test.:8443",
            "api.test:0443",
            "[::1]:80",
            "[::FFFF:1.2.3.4]:1",
            "1.2.3.4",
            "api.test:+443",
            "user:pw@api.test:443",
            "a.test, b.test",
            "0x7f.1",
            ":",
            "[",
            "]:",
            "\u{0}",
            "a.test:\u{FF10}",
        ] {
            run(raw.as_bytes());
        }
        run(b"a.test:80\xff");
        run(b"\xc3");
    }

    proptest! {
        #[test]
        fn arbitrary_bytes_hold_the_invariants(data in prop::collection::vec(any::<u8>(), 0..64)) {
            run(&data);
        }

        #[test]
        fn authority_like_strings_hold_the_invariants(
            raw in "[-\\[\\]:@,. 0-9a-fA-FxX+_%]{0,32}"
        ) {
            run(raw.as_bytes());
        }
    }
}
