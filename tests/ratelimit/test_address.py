"""Per-address limits count an IPv6 client by its /64 (its owner picks any address in it for
free), an IPv4 one by its address, and one client the same whichever socket it came in by."""

from __future__ import annotations

import pytest

from townhall.ratelimit.address import address_key


def test_an_ipv4_address_is_its_own_key() -> None:
    assert address_key("203.0.113.7") == "203.0.113.7"
    assert address_key("203.0.113.8") != address_key("203.0.113.7")


@pytest.mark.parametrize(
    "other",
    ["2001:db8:1:2::b", "2001:db8:1:2:ffff:ffff:ffff:ffff", "2001:DB8:1:2:0:0:0:1"],
)
def test_two_addresses_of_one_ipv6_slash_64_are_one_caller(other: str) -> None:
    assert address_key(other) == address_key("2001:db8:1:2::a") == "2001:db8:1:2::/64"


def test_neighbouring_ipv6_slash_64s_are_different_callers() -> None:
    assert address_key("2001:db8:1:3::a") != address_key("2001:db8:1:2::a")
    assert address_key("2001:db8:1:1:ffff:ffff:ffff:ffff") != address_key("2001:db8:1:2::")


def test_an_ipv4_mapped_ipv6_address_is_that_ipv4_address() -> None:
    assert address_key("::ffff:198.51.100.9") == "198.51.100.9"
    assert address_key("::ffff:c633:6409") == "198.51.100.9"  # the same, written in hex
    # Not lumped with every other IPv4 client in ::/64, where the mapped range lies.
    assert address_key("::ffff:198.51.100.10") != address_key("::ffff:198.51.100.9")


def test_a_link_local_zone_is_not_another_caller_and_loopback_stays_itself() -> None:
    assert address_key("fe80::1%eth0") == address_key("fe80::2%eth1") == "fe80::/64"
    assert address_key("::1") == "::1"


def test_what_is_not_an_ip_address_is_kept_as_it_is() -> None:
    assert address_key("testclient") == "testclient"
    assert address_key("") == ""
