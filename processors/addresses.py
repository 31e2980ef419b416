"""Which addresses an outbound fetch may connect to: only globally routable unicast ones.

Refused: loopback, private (RFC 1918, unique-local), link-local (the 169.254.169.254
and fd00:ec2::254 metadata services among them), CGNAT 100.64/10 (100.100.100.200),
multicast, unspecified, reserved and documentation ranges, and IPv6 forms that carry
one of those IPv4 addresses inside: IPv4-mapped (::ffff:127.0.0.1), IPv4-compatible
(::127.0.0.1), 6to4 (2002::/16), Teredo and NAT64 (64:ff9b::/96).
"""

from __future__ import annotations

import ipaddress
from ipaddress import IPv4Address, IPv6Address, IPv6Network

_IPV4_COMPATIBLE = IPv6Network("::/96")
_NAT64 = (IPv6Network("64:ff9b::/96"), IPv6Network("64:ff9b:1::/48"))


def is_public_address(address: str) -> bool:
    """True for an address an outbound fetch may connect to; False for anything else,
    including text that is not an address."""
    try:
        ip = ipaddress.ip_address(address.split("%", 1)[0])  # a scope id (fe80::1%eth0) is dropped
    except ValueError:
        return False
    if isinstance(ip, IPv6Address):
        if ip in _IPV4_COMPATIBLE:
            return False
        embedded = _embedded_ipv4(ip)
        if embedded is not None:  # the IPv4 address is what is reached
            return _is_public(embedded)
    return _is_public(ip)


def _is_public(ip: IPv4Address | IPv6Address) -> bool:
    return ip.is_global and not (ip.is_multicast or ip.is_unspecified or ip.is_loopback
                                 or ip.is_link_local or ip.is_private or ip.is_reserved)


def _embedded_ipv4(ip: IPv6Address) -> IPv4Address | None:
    if ip.ipv4_mapped is not None:
        return ip.ipv4_mapped
    if ip.sixtofour is not None:
        return ip.sixtofour
    if ip.teredo is not None:
        return ip.teredo[1]
    if any(ip in net for net in _NAT64):
        return IPv4Address(int(ip) & 0xFFFFFFFF)
    return None
