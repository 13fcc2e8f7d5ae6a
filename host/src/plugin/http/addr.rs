//! What kind of address an IP is, for deciding whether a plugin's fetch may
//! connect to it.
//!
//! Promise: [`classify`] calls an address [`AddrClass::Global`] only when it
//! is ordinary public unicast. Everything that leads into the host or its
//! network (loopback, private, link-local, CGNAT, unique-local, site-local)
//! and everything that is not a real destination (unspecified, multicast,
//! broadcast, documentation, benchmarking, reserved) gets its own class.
//! IPv6 forms that carry an IPv4 address (IPv4-mapped, NAT64 `64:ff9b::/96`,
//! 6to4 `2002::/16`) are judged by the IPv4 address they carry, so
//! `::ffff:127.0.0.1` is loopback like `127.0.0.1`.
//!
//! The table follows the IANA special-purpose registries. It errs on the
//! side of refusing: IPv6 outside `2000::/3` (the only block allocated for
//! global unicast) is reserved, except for the embedding forms above.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// The kind of an address, as far as fetching from it is concerned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AddrClass {
    /// Public unicast: may be fetched.
    Global,
    /// `127.0.0.0/8`, `::1`.
    Loopback,
    /// RFC 1918 `10/8`, `172.16/12`, `192.168/16`; IPv6 unique-local
    /// `fc00::/7`, deprecated site-local `fec0::/10`, local-use NAT64
    /// `64:ff9b:1::/48`.
    Private,
    /// `169.254/16` (cloud metadata lives here), `fe80::/10`.
    LinkLocal,
    /// Carrier-grade NAT shared space, `100.64/10`.
    Shared,
    /// `0.0.0.0/8`, `::`. Connecting to `0.0.0.0` reaches the local host on
    /// Linux.
    Unspecified,
    /// `224/4`, `ff00::/8`.
    Multicast,
    /// `255.255.255.255`.
    Broadcast,
    /// `192.0.2/24`, `198.51.100/24`, `203.0.113/24`, `2001:db8::/32`,
    /// `3fff::/20`.
    Documentation,
    /// `198.18/15`, `2001:2::/48`.
    Benchmarking,
    /// Anything else set aside: `192.0.0/24`, `192.88.99/24` (6to4 relay),
    /// `240/4`, IPv4-compatible `::a.b.c.d`, discard `100::/64`, IPv6
    /// outside `2000::/3`.
    Reserved,
}

impl AddrClass {
    /// Whether `allow_private = true` lets a fetch reach this class.
    /// Unspecified, multicast and broadcast addresses are never an HTTP
    /// server, so they are refused whatever the config says.
    pub fn private_may_allow(self) -> bool {
        !matches!(
            self,
            AddrClass::Unspecified | AddrClass::Multicast | AddrClass::Broadcast
        )
    }

    /// "a loopback address", for messages.
    pub fn describe(self) -> &'static str {
        match self {
            AddrClass::Global => "a public address",
            AddrClass::Loopback => "a loopback address",
            AddrClass::Private => "a private address",
            AddrClass::LinkLocal => "a link-local address",
            AddrClass::Shared => "a carrier-grade NAT (shared) address",
            AddrClass::Unspecified => "an unspecified address",
            AddrClass::Multicast => "a multicast address",
            AddrClass::Broadcast => "the broadcast address",
            AddrClass::Documentation => "a documentation address",
            AddrClass::Benchmarking => "a benchmarking address",
            AddrClass::Reserved => "a reserved address",
        }
    }
}

impl fmt::Display for AddrClass {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.describe())
    }
}

/// Classify an address.
pub fn classify(ip: IpAddr) -> AddrClass {
    match ip {
        IpAddr::V4(v4) => classify_v4(v4),
        IpAddr::V6(v6) => classify_v6(v6),
    }
}

fn classify_v4(ip: Ipv4Addr) -> AddrClass {
    let o = ip.octets();
    let in_net = |net: [u8; 4], len: u32| {
        let mask = u32::MAX.checked_shl(32 - len).unwrap_or(0);
        u32::from(ip) & mask == u32::from_be_bytes(net) & mask
    };
    match o {
        [0, ..] => AddrClass::Unspecified,
        [10, ..] => AddrClass::Private,
        [127, ..] => AddrClass::Loopback,
        [169, 254, ..] => AddrClass::LinkLocal,
        [192, 168, ..] => AddrClass::Private,
        [255, 255, 255, 255] => AddrClass::Broadcast,
        _ if in_net([100, 64, 0, 0], 10) => AddrClass::Shared,
        _ if in_net([172, 16, 0, 0], 12) => AddrClass::Private,
        _ if in_net([192, 0, 0, 0], 24) => AddrClass::Reserved,
        _ if in_net([192, 88, 99, 0], 24) => AddrClass::Reserved,
        _ if in_net([192, 0, 2, 0], 24)
            || in_net([198, 51, 100, 0], 24)
            || in_net([203, 0, 113, 0], 24) =>
        {
            AddrClass::Documentation
        }
        _ if in_net([198, 18, 0, 0], 15) => AddrClass::Benchmarking,
        _ if in_net([224, 0, 0, 0], 4) => AddrClass::Multicast,
        _ if in_net([240, 0, 0, 0], 4) => AddrClass::Reserved,
        _ => AddrClass::Global,
    }
}

fn classify_v6(ip: Ipv6Addr) -> AddrClass {
    let s = ip.segments();
    let bits = u128::from(ip);
    let in_net = |net: u128, len: u32| {
        let mask = u128::MAX.checked_shl(128 - len).unwrap_or(0);
        bits & mask == net & mask
    };
    // The IPv4 address in the low 32 bits, for the embedding forms.
    let low_v4 = || Ipv4Addr::from((bits & 0xffff_ffff) as u32);
    if ip.is_unspecified() {
        return AddrClass::Unspecified;
    }
    if ip.is_loopback() {
        return AddrClass::Loopback;
    }
    // ::ffff:a.b.c.d (IPv4-mapped) and 64:ff9b::a.b.c.d (NAT64) reach the
    // IPv4 address they carry.
    if in_net(0xffff << 32, 96) || in_net(0x0064_ff9b << 96, 96) {
        return classify_v4(low_v4());
    }
    // ::a.b.c.d, IPv4-compatible: deprecated, never a real destination.
    if in_net(0, 96) {
        return AddrClass::Reserved;
    }
    // 2002:AABB:CCDD::/48 is 6to4 for the IPv4 address AA.BB.CC.DD.
    if s[0] == 0x2002 {
        let [a, b] = s[1].to_be_bytes();
        let [c, d] = s[2].to_be_bytes();
        return classify_v4(Ipv4Addr::new(a, b, c, d));
    }
    if in_net(0x0064_ff9b_0001 << 80, 48) {
        return AddrClass::Private;
    }
    if in_net(0xff << 120, 8) {
        return AddrClass::Multicast;
    }
    if in_net(0xfe80 << 112, 10) {
        return AddrClass::LinkLocal;
    }
    if in_net(0xfc << 120, 7) || in_net(0xfec0 << 112, 10) {
        return AddrClass::Private;
    }
    if in_net(0x2001_0db8 << 96, 32) || in_net(0x3fff << 112, 20) {
        return AddrClass::Documentation;
    }
    if in_net(0x2001_0002 << 96, 48) {
        return AddrClass::Benchmarking;
    }
    if !in_net(0x2 << 124, 3) {
        return AddrClass::Reserved;
    }
    AddrClass::Global
}

#[cfg(test)]
mod tests {
    use super::*;

    fn class(text: &str) -> AddrClass {
        classify(text.parse().unwrap())
    }

    #[test]
    fn every_listed_range_is_classified() {
        use AddrClass::*;
        for (addr, want) in [
            // IPv4
            ("0.0.0.0", Unspecified),
            ("0.1.2.3", Unspecified),
            ("127.0.0.1", Loopback),
            ("127.255.255.254", Loopback),
            ("10.0.0.1", Private),
            ("10.255.255.255", Private),
            ("172.16.0.1", Private),
            ("172.31.255.255", Private),
            ("192.168.1.1", Private),
            ("169.254.169.254", LinkLocal),
            ("100.64.0.1", Shared),
            ("100.127.255.255", Shared),
            ("224.0.0.1", Multicast),
            ("239.255.255.250", Multicast),
            ("255.255.255.255", Broadcast),
            ("240.0.0.1", Reserved),
            ("192.0.0.8", Reserved),
            ("192.88.99.1", Reserved),
            ("192.0.2.1", Documentation),
            ("198.51.100.7", Documentation),
            ("203.0.113.9", Documentation),
            ("198.18.0.1", Benchmarking),
            ("198.19.255.255", Benchmarking),
            // Just outside the private and shared blocks.
            ("172.15.255.255", Global),
            ("172.32.0.0", Global),
            ("100.63.255.255", Global),
            ("100.128.0.0", Global),
            ("198.20.0.0", Global),
            ("8.8.8.8", Global),
            ("93.184.216.34", Global),
            // IPv6
            ("::", Unspecified),
            ("::1", Loopback),
            ("::ffff:127.0.0.1", Loopback),
            ("::ffff:10.1.2.3", Private),
            ("::ffff:169.254.169.254", LinkLocal),
            ("::ffff:0.0.0.0", Unspecified),
            ("::ffff:8.8.8.8", Global),
            ("::127.0.0.1", Reserved),
            ("::8.8.8.8", Reserved),
            ("64:ff9b::127.0.0.1", Loopback),
            ("64:ff9b::192.168.0.1", Private),
            ("64:ff9b::8.8.8.8", Global),
            ("64:ff9b:1::1", Private),
            ("2002:7f00:1::1", Loopback),
            ("2002:a9fe:a9fe::1", LinkLocal),
            ("2002:0808:0808::1", Global),
            ("fe80::1", LinkLocal),
            ("febf::1", LinkLocal),
            ("fc00::1", Private),
            ("fd12:3456::1", Private),
            ("fec0::1", Private),
            ("ff02::1", Multicast),
            ("ff05::2", Multicast),
            ("2001:db8::1", Documentation),
            ("3fff::1", Documentation),
            ("2001:2::1", Benchmarking),
            ("100::1", Reserved),
            ("4000::1", Reserved),
            ("2606:4700::1111", Global),
            ("2a00:1450:4001::200e", Global),
        ] {
            assert_eq!(class(addr), want, "{addr}");
        }
    }

    #[test]
    fn allow_private_never_allows_non_destinations() {
        for addr in ["0.0.0.0", "::", "224.0.0.1", "ff02::1", "255.255.255.255"] {
            assert!(!class(addr).private_may_allow(), "{addr}");
        }
        for addr in ["127.0.0.1", "::1", "10.0.0.1", "fe80::1", "100.64.0.1"] {
            assert!(class(addr).private_may_allow(), "{addr}");
        }
    }
}
