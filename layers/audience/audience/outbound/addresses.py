"""Which URLs an endpoint may have, and which addresses a delivery may connect to (no SSRF into the VPC,
the instance metadata service or loopback). `allow_private` lifts both checks for local development."""

from __future__ import annotations

import ipaddress
import re
import socket
from urllib.parse import urlsplit, urlunsplit

from audience.errors import ValidationError

MAX_URL_LENGTH = 2048
_LOCAL_SUFFIXES = (".localhost", ".local", ".internal", ".localdomain", ".home.arpa")
_LABEL = re.compile(r"^[a-z0-9_]([a-z0-9_-]*[a-z0-9_])?$")
_NAT64 = ipaddress.ip_network("64:ff9b::/96")


class BlockedAddressError(Exception):
    """The endpoint's host resolves to an address deliveries may not reach."""


def check_url(url: str, *, allow_private: bool) -> str:
    """The URL as stored, or ValidationError naming `url`: https only, a host, no credentials, no local
    or private host unless `allow_private`."""

    def refuse(message: str) -> ValidationError:
        return ValidationError.for_field("url", url, message)

    url = url.strip()
    if len(url) > MAX_URL_LENGTH:
        raise refuse(f"must be at most {MAX_URL_LENGTH} characters")
    try:
        parts = urlsplit(url)
        host = parts.hostname or ""
        _ = parts.port  # a malformed port raises here
    except ValueError:
        raise refuse("is not a valid URL") from None
    allowed = ("https", "http") if allow_private else ("https",)
    if parts.scheme not in allowed:
        raise refuse("must be an https URL")
    if not host:
        raise refuse("must name a host")
    if parts.username or parts.password:
        raise refuse("must not carry credentials")
    if parts.fragment:
        raise refuse("must not have a fragment")
    literal = ip_literal(host)
    if literal is None:
        try:
            name = normal_host(host)
        except ValueError:
            raise refuse("must name a valid host") from None
        if name != host:  # stored as ASCII (punycode), without a trailing dot
            _, colon, port = parts.netloc.rpartition(":")
            url = urlunsplit((parts.scheme, name + (colon + port if colon else ""), parts.path, parts.query, ""))
            host = name
        literal = ip_literal(host)  # `127.0.0.1.`
    if not allow_private:
        if literal is not None and not is_public(literal):
            raise refuse("must not point at a private, loopback or link-local address")
        if literal is None and (host == "localhost" or host.endswith(_LOCAL_SUFFIXES) or "." not in host):
            raise refuse("must name a public host")
    return url


def normal_host(host: str) -> str:
    """The host name in lower-case ASCII (IDNA, punycode) without a trailing dot; ValueError when it is not a
    valid name (empty labels, a label over 63 characters, characters IDNA refuses)."""
    name = host.lower()
    if name.endswith("."):
        name = name[:-1]
    try:
        ascii_name = name.encode("idna").decode("ascii")
    except UnicodeError:
        raise ValueError(f"{host!r} is not a valid host name") from None
    labels = ascii_name.split(".")
    if not ascii_name or len(ascii_name) > 253 or any(not 0 < len(label) <= 63 for label in labels):
        raise ValueError(f"{host!r} is not a valid host name")
    if any(not _LABEL.match(label) for label in labels):
        raise ValueError(f"{host!r} is not a valid host name")
    return ascii_name


def is_public(address: ipaddress.IPv4Address | ipaddress.IPv6Address) -> bool:
    """Whether `address` is global; an IPv6 address that embeds an IPv4 one (IPv4-mapped `::ffff:a.b.c.d`,
    IPv4-compatible `::a.b.c.d`, NAT64 `64:ff9b::/96`, 6to4, Teredo) is judged by the IPv4 address it carries."""
    if isinstance(address, ipaddress.IPv6Address):
        embedded: ipaddress.IPv4Address | None = address.ipv4_mapped or address.sixtofour
        if embedded is None and address.teredo:
            embedded = address.teredo[1]
        if embedded is None and (address in _NAT64 or int(address) >> 32 == 0):
            embedded = ipaddress.IPv4Address(int(address) & 0xFFFFFFFF)
        if embedded is not None:
            return embedded.is_global
    return address.is_global


def resolve_public(host: str, port: int) -> str:
    """One address of `host` to connect to, after checking that every address it resolves to is public
    (a name that resolves to both is refused: the connection could be steered to the private one)."""
    literal = ip_literal(host)
    if literal is not None:
        addresses = [literal]
    else:
        try:
            host = normal_host(host)
        except ValueError as error:
            raise BlockedAddressError(str(error)) from None
        if host == "localhost" or host.endswith(_LOCAL_SUFFIXES):
            raise BlockedAddressError(f"{host} is a local name")
        try:
            infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
        except socket.gaierror as error:
            raise BlockedAddressError(f"cannot resolve {host}: {error}") from None
        addresses = [ipaddress.ip_address(str(info[4][0]).split("%", 1)[0]) for info in infos]
    if not addresses:
        raise BlockedAddressError(f"{host} has no address")
    for address in addresses:
        if not is_public(address):
            raise BlockedAddressError(f"{host} resolves to {address}, which is not a public address")
    return str(addresses[0])


def ip_literal(host: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    try:
        return ipaddress.ip_address(host.strip("[]"))
    except ValueError:
        return None
