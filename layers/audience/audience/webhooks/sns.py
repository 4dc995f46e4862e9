"""Verifying Amazon SNS messages delivered to an HTTPS endpoint, as AWS documents it.

A message is trusted only when its signature checks out against the certificate SNS names in
SigningCertURL, that URL is an SNS host over HTTPS, the certificate is currently valid and the message
is recent. SignatureVersion "1" is SHA1withRSA and "2" is SHA256withRSA, both PKCS#1 v1.5, over the
string to sign: each signed field as "Key\\nValue\\n", in the order AWS lists them.

Only the standard library is imported here; `cryptography` and `httpx` are imported by the functions
that need them, the first time a certificate is fetched or a signature checked.
"""

from __future__ import annotations

import base64
import binascii
import re
from collections import OrderedDict
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

if TYPE_CHECKING:
    import httpx
    from cryptography.hazmat.primitives.asymmetric.rsa import RSAPublicKey

NOTIFICATION = "Notification"
SUBSCRIPTION_CONFIRMATION = "SubscriptionConfirmation"
UNSUBSCRIBE_CONFIRMATION = "UnsubscribeConfirmation"

# The signed fields of each message type, in string-to-sign order. Subject is signed only when present.
_SIGNED_FIELDS: dict[str, tuple[str, ...]] = {
    NOTIFICATION: ("Message", "MessageId", "Subject", "Timestamp", "TopicArn", "Type"),
    SUBSCRIPTION_CONFIRMATION: ("Message", "MessageId", "SubscribeURL", "Timestamp", "Token", "TopicArn", "Type"),
    UNSUBSCRIBE_CONFIRMATION: ("Message", "MessageId", "SubscribeURL", "Timestamp", "Token", "TopicArn", "Type"),
}
_OPTIONAL_FIELDS = frozenset({"Subject"})
_SIGNATURE_FIELDS = ("SignatureVersion", "Signature", "SigningCertURL")
_SIGNATURE_VERSIONS = {"1": "SHA1", "2": "SHA256"}

MAX_FUTURE_SKEW = timedelta(minutes=5)
CERTIFICATE_FETCH_TIMEOUT_SECONDS = 3.0
MAX_CERTIFICATE_BYTES = 16 * 1024
_MAX_URL_LENGTH = 4096

# sns.<region>.amazonaws.com, or sns.cn-<...>.amazonaws.com.cn in the China partition.
_SNS_HOST = re.compile(r"sns\.(?P<region>[a-z]{2}(?:-[a-z]+)+-[0-9]{1,2})\.amazonaws\.com(?P<cn>\.cn)?")
# Printable ASCII without space or backslash: anything else is a URL some parser may read differently.
_URL_CHARACTERS = re.compile(r"[!-\[\]-~]+")
_TIMESTAMP = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}(?:\.[0-9]{1,9})?Z")


class SnsVerificationError(Exception):
    """An SNS message, or the certificate it names, failed verification; the message says what failed."""


def _show(value: Any, limit: int = 80) -> str:
    """A value for an error message: its repr, cut short."""
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _check_sns_url(url: Any, field: str) -> str:
    """Check that `url` is https on an SNS host with no userinfo and no port but 443; return its path."""
    if not isinstance(url, str):
        raise SnsVerificationError(f"{field} is not a string")
    if not url:
        raise SnsVerificationError(f"{field} is empty")
    if len(url) > _MAX_URL_LENGTH:
        raise SnsVerificationError(f"{field} is longer than {_MAX_URL_LENGTH} characters")
    if not _URL_CHARACTERS.fullmatch(url):
        raise SnsVerificationError(f"{field} contains whitespace, a backslash or a non-ASCII character")
    try:
        parts = urlsplit(url)
    except ValueError as exc:
        raise SnsVerificationError(f"{field} is not a valid URL") from exc
    if parts.scheme.lower() != "https":
        raise SnsVerificationError(f"{field} scheme {_show(parts.scheme)} is not https")
    netloc = parts.netloc.lower()
    if "@" in netloc:
        raise SnsVerificationError(f"{field} must not contain user information")
    host, colon, port = netloc.partition(":")
    if netloc.startswith("["):  # an IPv6 literal, whose colons are not a port
        host, colon, port = netloc, "", ""
    if colon and port != "443":
        raise SnsVerificationError(f"{field} port {_show(port)} is not allowed (only 443)")
    match = _SNS_HOST.fullmatch(host)
    if match is None:
        raise SnsVerificationError(f"{field} host {_show(host)} is not an sns.<region>.amazonaws.com host")
    if bool(match["cn"]) != match["region"].startswith("cn-"):
        raise SnsVerificationError(f"{field} host {_show(host)} does not match the partition of its region")
    return parts.path


def check_certificate_url(url: str) -> None:
    """Check a SigningCertURL before anything is fetched from it.

    It must be https, name no user and no port other than 443, have a host `sns.<region>.amazonaws.com`
    (`sns.cn-<...>.amazonaws.com.cn` in China), no query or fragment, and a path ending in `.pem`.
    """
    path = _check_sns_url(url, "SigningCertURL")
    parts = urlsplit(url)
    if parts.query or parts.fragment or "?" in url or "#" in url:
        raise SnsVerificationError("SigningCertURL must not have a query or a fragment")
    if not path.startswith("/") or not path.endswith(".pem"):
        raise SnsVerificationError(f"SigningCertURL path {_show(path)} does not end in .pem")


def check_subscribe_url(url: str) -> None:
    """Check a SubscribeURL or UnsubscribeURL before it is visited: https on an SNS host, any path."""
    _check_sns_url(url, "SubscribeURL")


def string_to_sign(message: dict[str, Any]) -> bytes:
    """The bytes SNS signed: each signed field of the message's Type as "Key\\nValue\\n", in AWS's order."""
    kind = message.get("Type")
    fields = _SIGNED_FIELDS.get(kind) if isinstance(kind, str) else None
    if fields is None:
        raise SnsVerificationError(f"Type {_show(kind)} is not one of {', '.join(_SIGNED_FIELDS)}")
    pieces: list[str] = []
    for field in fields:
        value = _field(message, field)
        if value is not None:
            pieces.append(f"{field}\n{value}\n")
    return "".join(pieces).encode("utf-8")


def _field(message: dict[str, Any], field: str) -> str | None:
    """A field's text; None for an optional field that is absent; an error for anything else."""
    value = message.get(field)
    if value is None and field in _OPTIONAL_FIELDS:
        return None
    if value is None:
        raise SnsVerificationError(f"{field} is missing")
    if not isinstance(value, str):
        raise SnsVerificationError(f"{field} is not a string")
    return value


def fetch_certificate(url: str, *, transport: httpx.BaseTransport | None = None) -> bytes:
    """GET a certificate: 3 s timeout, no redirects, 200 only, at most 16 KiB. The default fetch."""
    import httpx

    try:
        with (
            httpx.Client(
                timeout=CERTIFICATE_FETCH_TIMEOUT_SECONDS, follow_redirects=False, transport=transport
            ) as client,
            client.stream("GET", url) as response,
        ):
            if response.status_code != 200:
                raise SnsVerificationError(f"fetching SigningCertURL returned HTTP {response.status_code}")
            declared = response.headers.get("content-length", "")
            if declared.isdigit() and int(declared) > MAX_CERTIFICATE_BYTES:
                raise SnsVerificationError(f"SigningCertURL body is larger than {MAX_CERTIFICATE_BYTES} bytes")
            body = bytearray()
            for chunk in response.iter_bytes():
                body += chunk
                if len(body) > MAX_CERTIFICATE_BYTES:
                    raise SnsVerificationError(f"SigningCertURL body is larger than {MAX_CERTIFICATE_BYTES} bytes")
            return bytes(body)
    except httpx.HTTPError as exc:
        raise SnsVerificationError(f"fetching SigningCertURL failed: {type(exc).__name__}") from exc


class CertificateCache:
    """SNS signing certificates' public keys by URL, fetched once and kept while the certificate is valid.

    Bounded to `max_entries`; the least recently used key goes first. Meant for one Lambda container, one
    thread at a time.
    """

    def __init__(self, fetch: Callable[[str], bytes] | None = None, *, max_entries: int = 16) -> None:
        if max_entries < 1:
            raise ValueError("max_entries must be at least 1")
        self._fetch = fetch if fetch is not None else fetch_certificate
        self._max_entries = max_entries
        self._entries: OrderedDict[str, tuple[RSAPublicKey, datetime, datetime]] = OrderedDict()

    def __len__(self) -> int:
        return len(self._entries)

    def __contains__(self, url: object) -> bool:
        return url in self._entries

    def public_key(self, url: str) -> RSAPublicKey:
        """The RSA public key of the currently valid certificate at `url`, which is checked before any fetch."""
        check_certificate_url(url)
        now = datetime.now(UTC)
        cached = self._entries.get(url)
        if cached is not None:
            key, not_before, not_after = cached
            if not_before <= now <= not_after:
                self._entries.move_to_end(url)
                return key
            del self._entries[url]
        try:
            pem = self._fetch(url)
        except SnsVerificationError:
            raise
        except Exception as exc:
            raise SnsVerificationError(f"fetching SigningCertURL failed: {type(exc).__name__}: {exc}") from exc
        if not isinstance(pem, bytes | bytearray):
            raise SnsVerificationError("fetching SigningCertURL did not return bytes")
        if len(pem) > MAX_CERTIFICATE_BYTES:
            raise SnsVerificationError(f"SigningCertURL body is larger than {MAX_CERTIFICATE_BYTES} bytes")
        key, not_before, not_after = _load_certificate(bytes(pem), now)
        self._entries[url] = (key, not_before, not_after)
        while len(self._entries) > self._max_entries:
            self._entries.popitem(last=False)
        return key


def _load_certificate(pem: bytes, now: datetime) -> tuple[RSAPublicKey, datetime, datetime]:
    """A PEM certificate's RSA public key and validity window, if it is valid at `now`."""
    from cryptography import x509
    from cryptography.hazmat.primitives.asymmetric.rsa import RSAPublicKey

    try:
        certificate = x509.load_pem_x509_certificate(pem)
    except ValueError as exc:
        raise SnsVerificationError("SigningCertURL did not return a PEM X.509 certificate") from exc
    not_before, not_after = certificate.not_valid_before_utc, certificate.not_valid_after_utc
    if now < not_before:
        raise SnsVerificationError(f"signing certificate is not valid before {not_before.isoformat()}")
    if now > not_after:
        raise SnsVerificationError(f"signing certificate expired at {not_after.isoformat()}")
    try:
        key = certificate.public_key()
    except ValueError as exc:  # an unsupported or malformed key
        raise SnsVerificationError("signing certificate's public key cannot be read") from exc
    if not isinstance(key, RSAPublicKey):
        raise SnsVerificationError("signing certificate's public key is not RSA")
    return key, not_before, not_after


def _check_timestamp(value: str, max_age_seconds: int) -> None:
    if not _TIMESTAMP.fullmatch(value):
        raise SnsVerificationError(f"Timestamp {_show(value)} is not ISO 8601 UTC (YYYY-MM-DDThh:mm:ss[.fff]Z)")
    try:
        moment = datetime.fromisoformat(value)
    except ValueError as exc:
        raise SnsVerificationError(f"Timestamp {_show(value)} is not a valid time") from exc
    now = datetime.now(UTC)
    if now - moment > timedelta(seconds=max_age_seconds):
        raise SnsVerificationError(f"Timestamp {value} is older than {max_age_seconds} seconds")
    if moment - now > MAX_FUTURE_SKEW:
        raise SnsVerificationError(f"Timestamp {value} is more than 5 minutes in the future")


def _decode_signature(value: str) -> bytes:
    try:
        signature = base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise SnsVerificationError("Signature is not valid base64") from exc
    if not signature:
        raise SnsVerificationError("Signature is empty")
    return signature


def _check_signature(key: RSAPublicKey, signature: bytes, payload: bytes, version: str) -> None:
    from cryptography.exceptions import InvalidSignature
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.asymmetric import padding

    # SignatureVersion 1 is SHA1withRSA by SNS's definition; SHA1 is used here only to verify it.
    algorithm = hashes.SHA1() if version == "1" else hashes.SHA256()  # noqa: S303
    try:
        key.verify(signature, payload, padding.PKCS1v15(), algorithm)
    except (InvalidSignature, ValueError) as exc:
        raise SnsVerificationError(
            f"Signature does not match the message (SignatureVersion {version}, {_SIGNATURE_VERSIONS[version]}withRSA)"
        ) from exc


def verify(message: dict[str, Any], certificates: CertificateCache, *, max_age_seconds: int = 3600) -> None:
    """Verify an SNS message (the parsed JSON body SNS POSTed); raise SnsVerificationError on any failure.

    Checks, in order: the Type, that every required field is a string, the SignatureVersion, the
    Signature's base64, that the Timestamp is at most `max_age_seconds` old and at most 5 minutes ahead,
    the SubscribeURL of a confirmation and any UnsubscribeURL, then the RSA signature over
    `string_to_sign` with the public key of the certificate at SigningCertURL.
    """
    if not isinstance(message, dict):
        raise SnsVerificationError("the message is not a JSON object")
    kind = message.get("Type")
    if not isinstance(kind, str) or kind not in _SIGNED_FIELDS:
        raise SnsVerificationError(f"Type {_show(kind)} is not one of {', '.join(_SIGNED_FIELDS)}")
    for field in (*_SIGNED_FIELDS[kind], *_SIGNATURE_FIELDS):
        _field(message, field)
    version = message["SignatureVersion"]
    if version not in _SIGNATURE_VERSIONS:
        raise SnsVerificationError(f"SignatureVersion {_show(version)} is not supported (only 1 or 2)")
    signature = _decode_signature(message["Signature"])
    _check_timestamp(message["Timestamp"], max_age_seconds)
    if kind != NOTIFICATION:
        check_subscribe_url(message["SubscribeURL"])
    if message.get("UnsubscribeURL") is not None:
        _check_sns_url(message["UnsubscribeURL"], "UnsubscribeURL")
    payload = string_to_sign(message)
    key = certificates.public_key(message["SigningCertURL"])
    _check_signature(key, signature, payload, version)
