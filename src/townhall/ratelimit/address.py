"""The caller a per-address limit counts: one IPv4 address, or one IPv6 /64.

An ISP hands a home or a server a whole IPv6 /64 (often a /56 or a /48); any host in it can
choose among 2^64 source addresses, and privacy extensions change them by themselves. Keyed by the
full address, every per-address limit (sign-in guesses, guest names, Spaces, clips, storage,
presence beacons, stage connections) would be multiplied by 2^64 for free; keyed by the /64, one
subscriber is one caller, as an IPv4 address (often a whole household behind a NAT) is. An
IPv4-mapped IPv6 address (`::ffff:a.b.c.d`, what a dual-stack socket reports for an IPv4 peer) is
that IPv4 address, so one client is one caller whichever socket it came in by.
"""

from __future__ import annotations

import ipaddress

IPV6_PREFIX = 64  # the smallest block an end site is given (RFC 6177 / RIPE-690)


def address_key(host: str) -> str:
    """The key of `host` for per-address limits: an IPv4 address as it is, an IPv6 address as
    its /64 (`2001:db8:1:2::/64`), an IPv4-mapped one as its IPv4 address; anything that is no IP
    address (a test client's name) as it is."""
    try:
        ip = ipaddress.ip_address(host)
    except ValueError:
        return host
    if isinstance(ip, ipaddress.IPv4Address):
        return str(ip)
    if ip.ipv4_mapped is not None:
        return str(ip.ipv4_mapped)
    if ip.is_loopback:  # ::1, this machine: no block of others around it
        return str(ip)
    unscoped = ipaddress.IPv6Address(ip.packed)  # a link-local zone (%eth0) is no other caller
    return str(ipaddress.IPv6Network((unscoped, IPV6_PREFIX), strict=False))
