"""Where an agent may send bytes: a destination is checked after its name is resolved, by the controller itself.

An agent names a host; the controller resolves it (never trusting a resolution made in the sandbox), and refuses
when any address it resolves to is loopback, private, link-local (which holds the cloud metadata services),
shared (CGNAT), multicast, reserved, unspecified, or one of this machine's own addresses (its API, Redis, the
Docker socket's TCP twin...). The connection then goes to the address that was checked, never to the name again,
so a name that answers differently the second time (DNS rebinding) reaches nothing new.

An admin can open a refused range on purpose, with `FLEETGATE_EGRESS_ALLOW`: `ADDRESS[/PREFIX][:PORT]`, comma
separated (`127.0.0.1:9000`, `10.20.0.0/16:443`, `[fd00::1]:80`). That list is the only way in.
"""

from __future__ import annotations

import errno
import ipaddress
import socket
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from controller.errors import Forbidden, Invalid

Address = ipaddress.IPv4Address | ipaddress.IPv6Address
Network = ipaddress.IPv4Network | ipaddress.IPv6Network
Resolver = Callable[[str, int], Sequence[str]]

METADATA = (ipaddress.ip_address("169.254.169.254"), ipaddress.ip_address("fd00:ec2::254"))
SHARED = ipaddress.ip_network("100.64.0.0/10")
MAX_HOST = 253


@dataclass(frozen=True)
class Allowlist:
    """Refused ranges an admin opened: (network, port or None for every port)."""

    entries: tuple[tuple[Network, int | None], ...] = ()

    @classmethod
    def parse(cls, text: str) -> Allowlist:
        entries = []
        for raw in (part.strip() for part in text.split(",")):
            if raw:
                entries.append(_entry(raw))
        return cls(tuple(entries))

    def opens(self, address: Address, port: int) -> bool:
        return any(address in net and (want is None or want == port) for net, want in self.entries)


def _entry(raw: str) -> tuple[Network, int | None]:
    where, port = raw, None
    if raw.startswith("["):  # [v6]:port or [v6/prefix]:port
        where, _, rest = raw[1:].partition("]")
        port = _port(rest[1:], raw) if rest.startswith(":") else None
    elif raw.count(":") == 1:
        where, _, text = raw.partition(":")
        port = _port(text, raw)
    try:
        return ipaddress.ip_network(where, strict=False), port
    except ValueError:
        raise Invalid(
            f"FLEETGATE_EGRESS_ALLOW: {raw!r} is not ADDRESS[/PREFIX][:PORT] (names are not accepted: "
            "an allow entry must say which addresses it opens)"
        ) from None


def _port(text: str, raw: str) -> int:
    if not text.isdigit() or not 0 < int(text) < 65536:
        raise Invalid(f"FLEETGATE_EGRESS_ALLOW: {raw!r} has no valid port after ':'")
    return int(text)


# In this order: the first that holds names the range (240.0.0.0/4 is both reserved and "private" to ipaddress).
CHECKS: tuple[tuple[Callable[[Address], bool], str], ...] = (
    (lambda a: a in METADATA, "a cloud metadata address"),
    (lambda a: a.is_loopback, "a loopback address (this machine)"),
    (lambda a: a.is_link_local, "a link-local address"),
    (lambda a: a.is_unspecified, "the unspecified address"),
    (lambda a: a.is_multicast, "a multicast address"),
    (lambda a: a in SHARED, "a shared (carrier-grade NAT) address"),
    (lambda a: a.is_reserved, "a reserved address"),
    (lambda a: a.is_private, "a private address"),
    (lambda a: not a.is_global, "a reserved address"),
)


def why_refused(address: Address, *, local: Callable[[Address], bool] | None = None) -> str | None:
    """Why no agent may reach this address on its own, or None when it is a public one."""
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    for holds, why in CHECKS:
        if holds(address):
            return why
    if (local or is_local)(address):
        return "an address of the controller's own machine"
    return None


def is_local(address: Address) -> bool:
    """Whether this machine holds the address: binding to it works only if it does."""
    family = socket.AF_INET6 if isinstance(address, ipaddress.IPv6Address) else socket.AF_INET
    with socket.socket(family, socket.SOCK_DGRAM) as probe:
        try:
            probe.bind((str(address), 0))
        except OSError as e:
            return e.errno != errno.EADDRNOTAVAIL
    return True


def system_resolver(host: str, port: int) -> list[str]:
    infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    return list(dict.fromkeys(str(info[4][0]) for info in infos))


def check_host(host: str) -> str:
    """A host name as an agent gave it, or Invalid: a plain name or address, no user, port or path."""
    name = host.strip().lower().rstrip(".")
    if name.startswith("[") and name.endswith("]"):
        name = name[1:-1]
    if not name or len(name) > MAX_HOST or any(c in name for c in "/@ \t\r\n\\?#%"):
        raise Invalid(f"{host[:100]!r} is not a host name")
    return name


def resolve_destination(
    host: str,
    port: int,
    allow: Allowlist,
    *,
    resolver: Resolver = system_resolver,
    local: Callable[[Address], bool] | None = None,
) -> list[str]:
    """The addresses to connect to for host:port, all of them checked; Forbidden names what was refused and why.

    Every address the name resolves to must pass: a name with one public and one private address is refused, so a
    client's address choice cannot be steered to the private one."""
    name = check_host(host)
    if not 0 < port < 65536:
        raise Invalid(f"port {port} is out of range")
    try:
        found = [ipaddress.ip_address(name)]
    except ValueError:
        try:
            found = [ipaddress.ip_address(a.split("%")[0]) for a in resolver(name, port)]
        except (OSError, UnicodeError) as e:
            raise Forbidden(f"{name} does not resolve: {e}") from None
    if not found:
        raise Forbidden(f"{name} does not resolve to any address")
    for address in found:
        if allow.opens(address, port):
            continue
        why = why_refused(address, local=local)
        if why is not None:
            shown = name if name == str(address) else f"{name} ({address})"
            raise Forbidden(
                f"{shown}:{port} is {why}; sandboxes may not reach it. An admin can open it with FLEETGATE_EGRESS_ALLOW"
            )
    return [str(address) for address in found]
