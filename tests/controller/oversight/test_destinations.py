"""The destination guard: refused ranges after resolution, the admin's allow list, and names that lie."""

from __future__ import annotations

import ipaddress

import pytest

from controller.errors import Forbidden, Invalid
from controller.oversight.destinations import Allowlist, is_local, resolve_destination, why_refused

PUBLIC = "93.184.215.14"


def never_local(_: object) -> bool:
    return False


def resolver(table: dict[str, list[str]]):  # type: ignore[no-untyped-def]
    def resolve(host: str, port: int) -> list[str]:
        if host not in table:
            raise OSError("Name or service not known")
        return table[host]

    return resolve


@pytest.mark.parametrize(
    ("address", "why"),
    [
        ("127.0.0.1", "loopback"),
        ("127.8.9.10", "loopback"),
        ("::1", "loopback"),
        ("10.1.2.3", "private"),
        ("172.16.0.1", "private"),
        ("192.168.1.1", "private"),
        ("fd12::1", "private"),
        ("169.254.169.254", "metadata"),
        ("fd00:ec2::254", "metadata"),
        ("169.254.10.10", "link-local"),
        ("fe80::1", "link-local"),
        ("100.64.0.1", "carrier-grade"),
        ("0.0.0.0", "unspecified"),
        ("224.0.0.1", "multicast"),
        ("::ffff:127.0.0.1", "loopback"),
        ("::ffff:10.0.0.1", "private"),
        ("240.0.0.1", "reserved"),
    ],
)
def test_internal_ranges_are_refused(address: str, why: str) -> None:
    reason = why_refused(ipaddress.ip_address(address), local=never_local)
    assert reason is not None
    assert why in reason


def test_a_public_address_passes_and_one_of_this_machine_does_not() -> None:
    assert why_refused(ipaddress.ip_address(PUBLIC), local=never_local) is None
    assert "own machine" in str(why_refused(ipaddress.ip_address(PUBLIC), local=lambda _: True))
    assert is_local(ipaddress.ip_address("127.0.0.1"))
    assert not is_local(ipaddress.ip_address("192.0.2.77"))


def test_a_name_is_checked_by_what_it_resolves_to() -> None:
    names = resolver({"example.org": [PUBLIC], "rebind.example": ["10.0.0.7"], "split.example": [PUBLIC, "127.0.0.1"]})
    assert resolve_destination("example.org", 443, Allowlist(), resolver=names, local=never_local) == [PUBLIC]
    with pytest.raises(Forbidden, match=r"rebind\.example \(10\.0\.0\.7\):443 is a private address"):
        resolve_destination("rebind.example", 443, Allowlist(), resolver=names, local=never_local)
    # One bad address among good ones refuses the name: the client's pick cannot be steered to it.
    with pytest.raises(Forbidden, match="loopback"):
        resolve_destination("split.example", 443, Allowlist(), resolver=names, local=never_local)
    with pytest.raises(Forbidden, match="does not resolve"):
        resolve_destination("nowhere.example", 443, Allowlist(), resolver=names, local=never_local)


@pytest.mark.parametrize("spelling", ["localhost", "0x7f000001", "2130706433", "127.1", "[::ffff:127.0.0.1]"])
def test_other_spellings_of_loopback_are_refused_after_real_resolution(spelling: str) -> None:
    with pytest.raises(Forbidden, match="loopback"):
        resolve_destination(spelling, 80, Allowlist())


def test_the_allow_list_opens_exactly_what_it_names() -> None:
    allow = Allowlist.parse("127.0.0.1:9000, 10.20.0.0/16, [::1]:81")
    assert resolve_destination("127.0.0.1", 9000, allow) == ["127.0.0.1"]
    assert resolve_destination("10.20.3.4", 22, allow, local=never_local) == ["10.20.3.4"]
    assert resolve_destination("::1", 81, allow) == ["::1"]
    for host, port in (("127.0.0.1", 9001), ("10.21.0.1", 22), ("::1", 80)):
        with pytest.raises(Forbidden):
            resolve_destination(host, port, allow, local=never_local)


@pytest.mark.parametrize("entry", ["example.org:443", "10.0.0.0/33", "127.0.0.1:0", "127.0.0.1:http"])
def test_a_bad_allow_entry_says_what_is_wrong(entry: str) -> None:
    with pytest.raises(Invalid, match="FLEETGATE_EGRESS_ALLOW"):
        Allowlist.parse(entry)


@pytest.mark.parametrize("host", ["", "user@example.org", "example.org/path", "a b", "x" * 300])
def test_a_host_that_is_not_a_host_is_invalid(host: str) -> None:
    with pytest.raises(Invalid):
        resolve_destination(host, 443, Allowlist(), resolver=resolver({}), local=never_local)
