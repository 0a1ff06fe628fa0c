"""Where `web_fetch` may go: the address policy, applied to every URL and redirect hop.

A destination must be a public internet address on an allowed port unless the
caller allow-lists it. Numeric hosts are parsed the way resolvers read them
(`0x7f.1`, `2130706433`), IPv6 transition addresses are judged by the IPv4
address they deliver to, and a name is resolved once, here, so the transport
can connect to exactly the address that was checked.
"""

from __future__ import annotations

import asyncio
import ipaddress
import re
import socket
from collections.abc import Iterable
from dataclasses import dataclass

import httpx
from langchain_core.tools import ToolException

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network

DEFAULT_ALLOWED_PORTS: frozenset[int] = frozenset({80, 443, 8080, 8443})

_MAX_URL_LENGTH = 4096

# IANA special-purpose IPv4 blocks that are not globally reachable. Python's own
# `is_global` differs between patch releases, so the verdict must not rest on it.
_NON_GLOBAL_V4: tuple[ipaddress.IPv4Network, ...] = tuple(
    ipaddress.IPv4Network(block)
    for block in (
        "0.0.0.0/8",
        "10.0.0.0/8",
        "100.64.0.0/10",
        "127.0.0.0/8",
        "169.254.0.0/16",
        "172.16.0.0/12",
        "192.0.0.0/24",
        "192.0.2.0/24",
        "192.88.99.0/24",
        "192.168.0.0/16",
        "198.18.0.0/15",
        "198.51.100.0/24",
        "203.0.113.0/24",
        "224.0.0.0/4",
        "240.0.0.0/4",
    )
)
_SHARED_V4 = ipaddress.IPv4Network("100.64.0.0/10")
_PRIVATE_NETWORKS: tuple[IPNetwork, ...] = tuple(
    ipaddress.ip_network(block)
    for block in ("10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16", "fc00::/7")
)
_GLOBAL_UNICAST_V6 = ipaddress.IPv6Network("2000::/3")
_NON_GLOBAL_V6: tuple[ipaddress.IPv6Network, ...] = tuple(
    ipaddress.IPv6Network(block) for block in ("2001::/23", "2001:db8::/32", "3fff::/20")
)
_TEREDO_V6 = ipaddress.IPv6Network("2001::/32")
_NAT64_V6 = ipaddress.IPv6Network("64:ff9b::/96")


class Refused(ToolException):
    """A destination the fetcher will not visit."""


def _ipv4_part(part: str) -> int | None:
    """Parse one dotted part the way URL parsers and `inet_aton` do (hex, octal, decimal)."""
    if part[:2] in ("0x", "0X"):
        digits = part[2:]
        if not re.fullmatch(r"[0-9a-fA-F]*", digits):
            return None
        return int(digits, 16) if digits else 0
    if len(part) > 1 and part.startswith("0"):
        return int(part, 8) if re.fullmatch(r"[0-7]+", part) else None
    return int(part) if re.fullmatch(r"[0-9]+", part) else None


def _ends_in_number(host: str) -> bool:
    labels = host.split(".")
    if len(labels) > 1 and labels[-1] == "":
        labels.pop()
    last = labels[-1]
    return bool(re.fullmatch(r"[0-9]+|0[xX][0-9a-fA-F]*", last))


def _parse_ipv4_host(host: str) -> ipaddress.IPv4Address:
    """Parse any IPv4 spelling a resolver accepts: `2130706433`, `0177.0.0.1`, `0x7f.1`, `127.1`."""
    parts = host.split(".")
    if len(parts) > 1 and parts[-1] == "":
        parts.pop()
    numbers = [_ipv4_part(part) for part in parts] if len(parts) <= 4 else [None]
    if any(number is None for number in numbers):
        raise ValueError(f"{host!r} is a malformed numeric address")
    values = [number for number in numbers if number is not None]
    *head, last = values
    if any(value > 255 for value in head) or last >= 256 ** (5 - len(values)):
        raise ValueError(f"{host!r} is a malformed numeric address")
    total = last + sum(value << (8 * (3 - index)) for index, value in enumerate(head))
    return ipaddress.IPv4Address(total)


def _ip_literal(host: str) -> IPAddress | None:
    """Return the address a host spells literally, or None for a DNS name."""
    if ":" in host:
        return ipaddress.IPv6Address(host)
    if _ends_in_number(host):
        return _parse_ipv4_host(host)
    return None


def _embedded_ipv4(ip: ipaddress.IPv6Address) -> list[ipaddress.IPv4Address] | None:
    """IPv4 addresses an IPv6 transition address delivers to, or None if it embeds none."""
    if ip.ipv4_mapped is not None:
        return [ip.ipv4_mapped]
    if ip in _NAT64_V6:
        return [ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF)]
    if ip.sixtofour is not None:
        return [ip.sixtofour]
    if ip in _TEREDO_V6 and ip.teredo is not None:
        return list(ip.teredo)
    return None


def _non_public_reason(ip: IPAddress) -> str | None:
    """Say why an address is not a public internet destination, or None if it is."""
    if isinstance(ip, ipaddress.IPv6Address):
        if ip.scope_id:
            return "a scoped (interface-bound) IPv6 address"
        embedded = _embedded_ipv4(ip)
        if embedded is not None:
            for inner in embedded:
                reason = _non_public_reason(inner)
                if reason is not None:
                    return f"{reason} (IPv4 {inner} embedded in IPv6)"
            return None
    if ip.is_unspecified:
        return "an unspecified address"
    if ip.is_loopback:
        return "a loopback address"
    if ip.is_link_local:
        return "a link-local address, the kind cloud metadata services use"
    if ip.is_multicast:
        return "a multicast address"
    if isinstance(ip, ipaddress.IPv4Address) and ip in _SHARED_V4:
        return "a shared (carrier-grade NAT) address"
    if any(ip.version == net.version and ip in net for net in _PRIVATE_NETWORKS):
        return "a private-network address"
    if ip.is_reserved:
        return "a reserved address"
    if isinstance(ip, ipaddress.IPv4Address):
        special = any(ip in block for block in _NON_GLOBAL_V4)
    else:
        special = ip not in _GLOBAL_UNICAST_V6 or any(ip in block for block in _NON_GLOBAL_V6)
    if special or not ip.is_global:
        return "a special-purpose address that is not publicly routable"
    return None


def _parse_allow_entry(entry: str) -> str | IPNetwork:
    text = entry.strip().lower().rstrip(".")
    if not text:
        raise ValueError("allow_hosts entries must not be empty")
    try:
        return ipaddress.ip_network(text.strip("[]"), strict=False)
    except ValueError:
        pass
    if not re.fullmatch(r"(\*\.)?[a-z0-9_]([a-z0-9_.-]*[a-z0-9_])?", text):
        raise ValueError(
            f"allow_hosts entry {entry!r} is neither a host name, '*.domain', "
            "an IP address nor a CIDR block"
        )
    return text


@dataclass(frozen=True)
class Policy:
    """The destinations a caller allowed beyond public addresses, and the public ports."""

    names: frozenset[str]
    suffixes: tuple[str, ...]
    networks: tuple[IPNetwork, ...]
    ports: frozenset[int]

    @classmethod
    def build(cls, allow_hosts: Iterable[str], allow_ports: Iterable[int]) -> Policy:
        """Parse ``allow_hosts`` entries; raise ValueError on a malformed one."""
        names: set[str] = set()
        suffixes: list[str] = []
        networks: list[IPNetwork] = []
        for entry in allow_hosts:
            parsed = _parse_allow_entry(entry)
            if isinstance(parsed, str):
                if parsed.startswith("*."):
                    suffixes.append(parsed[1:])
                else:
                    names.add(parsed)
            else:
                networks.append(parsed)
        return cls(frozenset(names), tuple(suffixes), tuple(networks), frozenset(allow_ports))

    def allows_name(self, host: str) -> bool:
        """Whether a host name is allow-listed (by name or wildcard)."""
        return host in self.names or any(host.endswith(suffix) for suffix in self.suffixes)

    def allows_ip(self, ip: IPAddress) -> bool:
        """Whether an address lies in an allow-listed network."""
        return any(ip.version == net.version and ip in net for net in self.networks)


def parse_url(raw: str) -> httpx.URL:
    """Parse a URL and apply the checks that need no DNS."""
    text = raw.strip()
    if not text:
        raise Refused("web_fetch needs a URL, and none was given.")
    if len(text) > _MAX_URL_LENGTH:
        raise Refused(f"web_fetch refused the URL: it is longer than {_MAX_URL_LENGTH} characters.")
    if re.search(r"[\x00-\x20\x7f]", text):
        raise Refused(
            f"web_fetch refused {text!r}: URLs must not contain spaces or control characters."
        )
    try:
        url = httpx.URL(text)
    except (httpx.InvalidURL, ValueError) as exc:
        raise Refused(f"web_fetch refused {text!r}: it is not a valid URL ({exc}).") from None
    if not url.scheme:
        raise Refused(
            f"web_fetch refused {text!r}: it is not an absolute URL; "
            "give one that starts with http:// or https://."
        )
    if url.scheme not in ("http", "https"):
        raise Refused(
            f"web_fetch refused {text!r}: the {url.scheme}: scheme is not allowed; "
            "only http:// and https:// URLs can be fetched."
        )
    if url.userinfo:
        raise Refused(
            f"web_fetch refused {text!r}: "
            "URLs that carry credentials (user:password@) are not allowed."
        )
    if not url.raw_host:
        raise Refused(f"web_fetch refused {text!r}: the URL has no host.")
    return url


def effective_port(url: httpx.URL) -> int:
    """The port a URL connects to, its scheme's default if it names none."""
    if url.port is not None:  # `or` would turn an explicit port 0 into the default
        return url.port
    return 443 if url.scheme == "https" else 80


async def _getaddrinfo(host: str, port: int) -> list[str]:
    """Resolve a host name to IP address strings (one DNS lookup).

    Tests replace this function; the fetcher never resolves a name any other way.
    """
    loop = asyncio.get_running_loop()
    infos = await loop.getaddrinfo(host, port, type=socket.SOCK_STREAM, proto=socket.IPPROTO_TCP)
    return [str(info[4][0]) for info in infos if info[0] in (socket.AF_INET, socket.AF_INET6)]


async def check_destination(url: httpx.URL, policy: Policy) -> str:
    """Refuse a non-public destination; return the one IP address to connect to."""
    raw_host = url.raw_host.decode("ascii")
    host = raw_host.lower().rstrip(".")
    port = effective_port(url)
    shown = str(url)
    if "%" in host:
        raise Refused(f"web_fetch refused {shown}: scoped IPv6 addresses are not allowed.")
    try:
        literal = _ip_literal(host)
    except ValueError as exc:
        raise Refused(f"web_fetch refused {shown}: {exc}.") from None
    by_name = literal is None and policy.allows_name(host)
    port_free = by_name or (literal is not None and policy.allows_ip(literal))
    if not port_free and not policy.networks and port not in policy.ports:
        raise Refused(_port_message(shown, port, policy))
    if literal is not None:
        addresses: list[IPAddress] = [literal]
    else:
        if not by_name and (host == "localhost" or host.endswith(".localhost")):
            raise Refused(f"web_fetch refused {shown}: localhost is not a public web address.")
        try:
            answers = await _getaddrinfo(host, port)
            addresses = list(dict.fromkeys(ipaddress.ip_address(answer) for answer in answers))
        except (OSError, UnicodeError, ValueError) as exc:
            raise ToolException(f"web_fetch could not resolve {host!r} ({exc}).") from None
        if not addresses:
            raise ToolException(f"web_fetch could not resolve {host!r}: no IP addresses.")
    if not by_name:
        for ip in addresses:
            if policy.allows_ip(ip):
                continue
            reason = _non_public_reason(ip)
            if reason is not None:
                where = "is" if literal is not None else f"resolves to {ip}, which is"
                raise Refused(
                    f"web_fetch refused {shown}: the host {where} {reason}. "
                    "Only public internet addresses can be fetched."
                )
        port_free = port_free or all(policy.allows_ip(ip) for ip in addresses)
        if not port_free and port not in policy.ports:
            raise Refused(_port_message(shown, port, policy))
    return str(addresses[0])


def _port_message(shown: str, port: int, policy: Policy) -> str:
    ports = ", ".join(str(p) for p in sorted(policy.ports))
    return f"web_fetch refused {shown}: port {port} is not allowed (allowed ports: {ports})."
