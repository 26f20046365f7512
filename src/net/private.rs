//! Classifying destination addresses: which ones a sandbox may never reach unless
//! the operator allowed them.
//!
//! SECURITY: this is the SSRF guard. It must be applied to the address actually
//! connected to, never to a name that is resolved again later.

use ipnet::IpNet;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// Whether `ip` is private, loopback, link-local or otherwise not a public unicast
/// destination, per DESIGN.md "Private destinations".
pub fn is_private(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => is_private_v4(v4),
        IpAddr::V6(v6) => is_private_v6(v6),
    }
}

fn is_private_v4(ip: Ipv4Addr) -> bool {
    let [a, b, ..] = ip.octets();
    ip.is_private()
        || ip.is_loopback()
        || ip.is_link_local()
        || ip.is_unspecified()
        || ip.is_broadcast()
        || ip.is_multicast()
        || a == 0 // 0.0.0.0/8
        || (a == 100 && (b & 0xC0) == 64) // CGNAT 100.64.0.0/10
        || (a == 192 && b == 0 && ip.octets()[2] == 0) // IETF protocol assignments 192.0.0.0/24
        || (a == 198 && (b & 0xFE) == 18) // benchmarking 198.18.0.0/15
        || a >= 240 // reserved 240.0.0.0/4
        || ip == AZURE_WIRESERVER
}

/// Azure's WireServer / platform endpoint: public-looking, but reachable only from
/// inside Azure and serving host-level metadata, like 169.254.169.254 elsewhere.
const AZURE_WIRESERVER: Ipv4Addr = Ipv4Addr::new(168, 63, 129, 16);

fn is_private_v6(ip: Ipv6Addr) -> bool {
    let seg = ip.segments();
    ip.is_loopback()
        || ip.is_unspecified()
        || ip.is_multicast()
        || (seg[0] & 0xFE00) == 0xFC00 // unique local fc00::/7
        || (seg[0] & 0xFFC0) == 0xFE80 // link-local fe80::/10
        || (seg[0] & 0xFFC0) == 0xFEC0 // deprecated site-local fec0::/10
        || embeds_ipv4(ip)
}

/// IPv4 carried inside IPv6 can reach IPv4 hosts through translators, so every
/// such form is refused: mapped, compatible, SIIT-translated, NAT64, 6to4 and Teredo.
fn embeds_ipv4(ip: Ipv6Addr) -> bool {
    let seg = ip.segments();
    let mapped = seg[..5] == [0, 0, 0, 0, 0] && seg[5] == 0xFFFF;
    let compatible = seg[..6] == [0, 0, 0, 0, 0, 0];
    let translated = seg[..4] == [0, 0, 0, 0] && seg[4] == 0xFFFF && seg[5] == 0; // SIIT ::ffff:0:0/96
    let nat64 = seg[..6] == [0x64, 0xFF9B, 0, 0, 0, 0];
    let nat64_local = seg[0] == 0x64 && seg[1] == 0xFF9B && seg[2] == 1; // 64:ff9b:1::/48
    let six_to_four = seg[0] == 0x2002;
    let teredo = seg[0] == 0x2001 && seg[1] == 0;
    mapped || compatible || translated || nat64 || nat64_local || six_to_four || teredo
}

/// Whether a connection to `ip` is permitted: public, or inside an allowed CIDR.
pub fn is_permitted(ip: IpAddr, allow_private: &[IpNet]) -> bool {
    if !is_private(ip) {
        return true;
    }
    let mapped_v4 = match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map(IpAddr::V4),
        IpAddr::V4(_) => None,
    };
    allow_private
        .iter()
        .any(|net| net.contains(&ip) || mapped_v4.is_some_and(|v4| net.contains(&v4)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn private_addresses_are_refused() {
        for s in [
            "127.0.0.1",
            "10.1.2.3",
            "172.16.0.1",
            "172.31.255.255",
            "192.168.1.1",
            "169.254.169.254",
            "100.64.0.1",
            "100.127.255.255",
            "0.0.0.0",
            "0.1.2.3",
            "224.0.0.1",
            "255.255.255.255",
            "::1",
            "::",
            "fc00::1",
            "fd12::1",
            "fe80::1",
            "ff02::1",
            "::ffff:127.0.0.1",
            "::ffff:8.8.8.8",
            "64:ff9b::a00:1",
            "2002:a00:1::",
            "2001:0:4136:e378::1",
            "::127.0.0.1",
        ] {
            let ip: IpAddr = s.parse().unwrap();
            assert!(is_private(ip), "{s} should be private");
            assert!(!is_permitted(ip, &[]), "{s} should not be permitted");
        }
    }

    #[test]
    fn public_addresses_pass() {
        for s in [
            "8.8.8.8",
            "1.1.1.1",
            "172.32.0.1",
            "100.128.0.1",
            "2606:4700::1111",
            "2001:db9::1",
        ] {
            assert!(!is_private(s.parse().unwrap()), "{s}");
        }
    }

    #[test]
    fn allow_private_lets_listed_ranges_through() {
        let allow: Vec<IpNet> = vec!["127.0.0.0/8".parse().unwrap()];
        assert!(is_permitted("127.0.0.1".parse().unwrap(), &allow));
        assert!(is_permitted("::ffff:127.0.0.1".parse().unwrap(), &allow));
        assert!(!is_permitted("10.0.0.1".parse().unwrap(), &allow));
        assert!(!is_permitted("169.254.169.254".parse().unwrap(), &allow));
    }
}
