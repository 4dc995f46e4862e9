"""SNS message verification: string to sign, signatures v1/v2, certificate URLs and cache, replay window."""

from __future__ import annotations

import base64
import os
import subprocess
import sys
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.x509.oid import NameOID

from audience.webhooks import sns
from audience.webhooks.sns import (
    CertificateCache,
    SnsVerificationError,
    check_certificate_url,
    check_subscribe_url,
    string_to_sign,
    verify,
)

ROOT = Path(__file__).resolve().parents[2]
CERT_URL = "https://sns.us-east-1.amazonaws.com/SimpleNotificationService-0123456789abcdef.pem"
OTHER_CERT_URL = "https://sns.eu-west-1.amazonaws.com/SimpleNotificationService-fedcba9876543210.pem"
TOPIC = "arn:aws:sns:us-east-1:123456789012:audience-events"
SUBSCRIBE_URL = (
    "https://sns.us-east-1.amazonaws.com/?Action=ConfirmSubscription"
    f"&TopicArn={TOPIC}&Token=2336412f37fb687f5d51e6e241d164b0533302ec696efc8f113cd2252ce8a925"
)
UNSUBSCRIBE_URL = f"https://sns.us-east-1.amazonaws.com/?Action=Unsubscribe&SubscriptionArn={TOPIC}:0a1b2c3d"


# --- keys, certificates, signing -------------------------------------------------------------------


@pytest.fixture(scope="module")
def key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


@pytest.fixture(scope="module")
def other_key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


def _certificate(
    private_key: Any, *, not_before: timedelta = timedelta(days=-1), not_after: timedelta = timedelta(days=30)
) -> bytes:
    """A self-signed PEM certificate for `private_key`, valid from now+not_before to now+not_after."""
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "sns.amazonaws.com")])
    now = datetime.now(UTC)
    certificate = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(private_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now + not_before)
        .not_valid_after(now + not_after)
        .sign(private_key, hashes.SHA256())
    )
    return certificate.public_bytes(serialization.Encoding.PEM)


@pytest.fixture(scope="module")
def pem(key: rsa.RSAPrivateKey) -> bytes:
    return _certificate(key)


@dataclass
class Fetcher:
    """A fetch that serves PEMs by URL and records every URL it was asked for."""

    pems: dict[str, bytes]
    calls: list[str] = field(default_factory=list)

    def __call__(self, url: str) -> bytes:
        self.calls.append(url)
        if url not in self.pems:
            raise AssertionError(f"unexpected fetch of {url}")
        return self.pems[url]


@pytest.fixture
def fetcher(pem: bytes) -> Fetcher:
    return Fetcher({CERT_URL: pem, OTHER_CERT_URL: pem})


@pytest.fixture
def certificates(fetcher: Fetcher) -> CertificateCache:
    return CertificateCache(fetcher)


def _timestamp(offset: timedelta = timedelta(0)) -> str:
    moment = datetime.now(UTC) + offset
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"


def _sign(message: dict[str, Any], private_key: Any, version: str = "2") -> dict[str, Any]:
    """`message` with SignatureVersion, Signature and SigningCertURL (unless already set) added."""
    signed = {"SigningCertURL": CERT_URL, **message, "SignatureVersion": version}
    algorithm = hashes.SHA1() if version == "1" else hashes.SHA256()
    signature = private_key.sign(string_to_sign(signed), padding.PKCS1v15(), algorithm)
    signed["Signature"] = base64.b64encode(signature).decode("ascii")
    return signed


def _notification(*, subject: str | None = "Audience event", **overrides: Any) -> dict[str, Any]:
    message = {
        "Type": "Notification",
        "MessageId": "22b80b92-fdea-4c2c-8f9d-bdfb0c7bf324",
        "TopicArn": TOPIC,
        "Message": '{"eventType":"Delivery","mail":{"messageId":"0100018c"}}',
        "Timestamp": _timestamp(),
        "UnsubscribeURL": UNSUBSCRIBE_URL,
    }
    if subject is not None:
        message["Subject"] = subject
    message.update(overrides)
    return message


def _confirmation(kind: str = "SubscriptionConfirmation", **overrides: Any) -> dict[str, Any]:
    message = {
        "Type": kind,
        "MessageId": "165545c9-2a5c-472c-8df2-7ff2be2b3b1b",
        "Token": "2336412f37fb687f5d51e6e241d164b0533302ec696efc8f113cd2252ce8a925",
        "TopicArn": TOPIC,
        "Message": f"You have chosen to subscribe to the topic {TOPIC}.\nTo confirm the subscription, visit the "
        "SubscribeURL included in this message.",
        "SubscribeURL": SUBSCRIBE_URL,
        "Timestamp": _timestamp(),
    }
    message.update(overrides)
    return message


# --- string to sign ---------------------------------------------------------------------------------


def test_notification_string_to_sign_follows_the_documented_order() -> None:
    message = {
        "Type": "Notification",
        "MessageId": "m-1",
        "TopicArn": "arn:t",
        "Subject": "Hi",
        "Message": "line one\nline two",
        "Timestamp": "2024-01-02T03:04:05.678Z",
        "SignatureVersion": "2",
        "Signature": "ignored",
        "SigningCertURL": CERT_URL,
        "UnsubscribeURL": UNSUBSCRIBE_URL,
        "MessageAttributes": {"a": {"Type": "String", "Value": "b"}},
    }
    assert string_to_sign(message) == (
        b"Message\nline one\nline two\n"
        b"MessageId\nm-1\n"
        b"Subject\nHi\n"
        b"Timestamp\n2024-01-02T03:04:05.678Z\n"
        b"TopicArn\narn:t\n"
        b"Type\nNotification\n"
    )


@pytest.mark.parametrize("subject", ["absent", None])
def test_notification_without_subject_leaves_it_out_of_the_string_to_sign(subject: str | None) -> None:
    message = {"Type": "Notification", "MessageId": "m-1", "TopicArn": "arn:t", "Message": "é", "Timestamp": "T"}
    if subject != "absent":
        message["Subject"] = subject
    assert string_to_sign(message) == (
        "Message\né\nMessageId\nm-1\nTimestamp\nT\nTopicArn\narn:t\nType\nNotification\n".encode()
    )


@pytest.mark.parametrize("kind", ["SubscriptionConfirmation", "UnsubscribeConfirmation"])
def test_confirmation_string_to_sign_follows_the_documented_order(kind: str) -> None:
    message = {
        "Type": kind,
        "MessageId": "m-2",
        "Token": "tok",
        "TopicArn": "arn:t",
        "Message": "confirm",
        "SubscribeURL": "https://sns.us-east-1.amazonaws.com/?Action=ConfirmSubscription",
        "Timestamp": "2024-01-02T03:04:05.678Z",
        "Subject": "not signed for confirmations",
    }
    assert string_to_sign(message) == (
        b"Message\nconfirm\n"
        b"MessageId\nm-2\n"
        b"SubscribeURL\nhttps://sns.us-east-1.amazonaws.com/?Action=ConfirmSubscription\n"
        b"Timestamp\n2024-01-02T03:04:05.678Z\n"
        b"Token\ntok\n"
        b"TopicArn\narn:t\n" + f"Type\n{kind}\n".encode()
    )


@pytest.mark.parametrize(
    "message",
    [
        {"Type": "Publish", "Message": "x"},
        {"Message": "x"},
        {"Type": "Notification", "MessageId": "m", "Timestamp": "T", "TopicArn": "arn:t"},
        {"Type": "Notification", "Message": 1, "MessageId": "m", "Timestamp": "T", "TopicArn": "arn:t"},
    ],
)
def test_string_to_sign_rejects_unknown_types_and_missing_fields(message: dict[str, Any]) -> None:
    with pytest.raises(SnsVerificationError):
        string_to_sign(message)


# --- valid messages ---------------------------------------------------------------------------------


@pytest.mark.parametrize("version", ["1", "2"])
@pytest.mark.parametrize("subject", ["Audience event", None])
def test_valid_notification_verifies(
    version: str, subject: str | None, key: rsa.RSAPrivateKey, certificates: CertificateCache, fetcher: Fetcher
) -> None:
    verify(_sign(_notification(subject=subject), key, version), certificates)
    assert fetcher.calls == [CERT_URL]


@pytest.mark.parametrize("version", ["1", "2"])
@pytest.mark.parametrize("kind", ["SubscriptionConfirmation", "UnsubscribeConfirmation"])
def test_valid_confirmation_verifies(
    version: str, kind: str, key: rsa.RSAPrivateKey, certificates: CertificateCache
) -> None:
    verify(_sign(_confirmation(kind), key, version), certificates)


def test_unsigned_fields_may_change(key: rsa.RSAPrivateKey, certificates: CertificateCache) -> None:
    message = _sign(_notification(), key)
    message["MessageAttributes"] = {"added": {"Type": "String", "Value": "later"}}
    verify(message, certificates)


# --- tampering and wrong signatures -----------------------------------------------------------------


@pytest.mark.parametrize(
    ("field_name", "value"),
    [
        ("Message", '{"eventType":"Bounce"}'),
        ("TopicArn", "arn:aws:sns:us-east-1:123456789012:someone-elses-topic"),
        ("Type", "SubscriptionConfirmation"),
        ("MessageId", "00000000-0000-0000-0000-000000000000"),
        ("Subject", "Changed"),
        ("Subject", None),
        ("Timestamp", _timestamp(timedelta(seconds=-1))),
    ],
)
@pytest.mark.parametrize("version", ["1", "2"])
def test_tampered_notification_is_rejected(
    field_name: str, value: str | None, version: str, key: rsa.RSAPrivateKey, certificates: CertificateCache
) -> None:
    message = _sign(_notification(), key, version)
    if value is None:
        del message[field_name]
    else:
        message[field_name] = value
    with pytest.raises(SnsVerificationError):
        verify(message, certificates)


def test_subject_added_to_a_notification_signed_without_one_is_rejected(
    key: rsa.RSAPrivateKey, certificates: CertificateCache
) -> None:
    message = _sign(_notification(subject=None), key)
    message["Subject"] = "Injected"
    with pytest.raises(SnsVerificationError, match="Signature does not match"):
        verify(message, certificates)


def test_changed_type_on_a_notification_is_a_signature_failure(
    key: rsa.RSAPrivateKey, certificates: CertificateCache
) -> None:
    message = _sign(_confirmation("SubscriptionConfirmation"), key)
    message["Type"] = "UnsubscribeConfirmation"
    with pytest.raises(SnsVerificationError, match="Signature does not match"):
        verify(message, certificates)


@pytest.mark.parametrize(
    ("field_name", "value"),
    [
        ("Token", "forged-token"),
        ("SubscribeURL", "https://sns.us-east-1.amazonaws.com/?Action=ConfirmSubscription&Token=forged"),
        ("TopicArn", "arn:aws:sns:us-east-1:123456789012:other"),
    ],
)
def test_tampered_confirmation_is_rejected(
    field_name: str, value: str, key: rsa.RSAPrivateKey, certificates: CertificateCache
) -> None:
    message = _sign(_confirmation(), key)
    message[field_name] = value
    with pytest.raises(SnsVerificationError, match="Signature does not match"):
        verify(message, certificates)


@pytest.mark.parametrize("version", ["1", "2"])
def test_signature_made_with_another_key_is_rejected(
    version: str, other_key: rsa.RSAPrivateKey, certificates: CertificateCache
) -> None:
    with pytest.raises(SnsVerificationError, match="Signature does not match"):
        verify(_sign(_notification(), other_key, version), certificates)


def test_signature_version_must_match_the_hash_used(key: rsa.RSAPrivateKey, certificates: CertificateCache) -> None:
    message = _sign(_notification(), key, "2")
    message["SignatureVersion"] = "1"
    with pytest.raises(SnsVerificationError, match="SignatureVersion 1"):
        verify(message, certificates)


@pytest.mark.parametrize(
    ("version", "error"),
    [("3", "SignatureVersion '3' is not supported"), ("", "SignatureVersion '' is not supported")],
)
def test_unsupported_signature_version_is_named(
    version: str, error: str, key: rsa.RSAPrivateKey, certificates: CertificateCache, fetcher: Fetcher
) -> None:
    message = _sign(_notification(), key)
    message["SignatureVersion"] = version
    with pytest.raises(SnsVerificationError, match=error):
        verify(message, certificates)
    assert fetcher.calls == []


def test_missing_or_non_string_signature_version_is_rejected(
    key: rsa.RSAPrivateKey, certificates: CertificateCache
) -> None:
    message = _sign(_notification(), key)
    del message["SignatureVersion"]
    with pytest.raises(SnsVerificationError, match="SignatureVersion is missing"):
        verify(message, certificates)
    message["SignatureVersion"] = 2
    with pytest.raises(SnsVerificationError, match="SignatureVersion is not a string"):
        verify(message, certificates)


@pytest.mark.parametrize("signature", ["not base64!", "QUJD=", "QUJD\nRA==", ""])
def test_signature_that_is_not_base64_is_rejected(
    signature: str, key: rsa.RSAPrivateKey, certificates: CertificateCache, fetcher: Fetcher
) -> None:
    message = _sign(_notification(), key)
    message["Signature"] = signature
    with pytest.raises(SnsVerificationError, match="Signature is"):
        verify(message, certificates)
    assert fetcher.calls == []


def test_truncated_signature_is_rejected(key: rsa.RSAPrivateKey, certificates: CertificateCache) -> None:
    message = _sign(_notification(), key)
    message["Signature"] = base64.b64encode(base64.b64decode(message["Signature"])[:-8]).decode()
    with pytest.raises(SnsVerificationError, match="Signature does not match"):
        verify(message, certificates)


@pytest.mark.parametrize(
    ("message", "error"),
    [
        ([], "not a JSON object"),
        ({"Type": "Publish"}, "Type 'Publish' is not one of"),
        ({"Type": ["Notification"]}, "is not one of"),
        ({}, "Type None is not one of"),
    ],
)
def test_malformed_messages_are_rejected(message: Any, error: str, certificates: CertificateCache) -> None:
    with pytest.raises(SnsVerificationError, match=error):
        verify(message, certificates)


@pytest.mark.parametrize("missing", ["Message", "MessageId", "Timestamp", "TopicArn", "Signature", "SigningCertURL"])
def test_missing_required_field_is_named(missing: str, key: rsa.RSAPrivateKey, certificates: CertificateCache) -> None:
    message = _sign(_notification(), key)
    del message[missing]
    with pytest.raises(SnsVerificationError, match=f"{missing} is missing"):
        verify(message, certificates)


@pytest.mark.parametrize("missing", ["Token", "SubscribeURL"])
def test_confirmation_requires_token_and_subscribe_url(
    missing: str, key: rsa.RSAPrivateKey, certificates: CertificateCache
) -> None:
    message = _sign(_confirmation(), key)
    del message[missing]
    with pytest.raises(SnsVerificationError, match=f"{missing} is missing"):
        verify(message, certificates)


# --- certificate and subscribe URLs ------------------------------------------------------------------

FORGED_CERT_URLS = [
    "https://sns.us-east-1.amazonaws.com.evil.com/cert.pem",
    "https://evil.com/sns.us-east-1.amazonaws.com/cert.pem",
    "https://sns.us-east-1.amazonaws.com@evil.com/cert.pem",
    "https://sns.us-east-1.amazonaws.com:443@evil.com/cert.pem",
    "https://user@sns.us-east-1.amazonaws.com/cert.pem",
    "https://sns.us-east-1.amazonaws.com\\@evil.com/cert.pem",
    "http://sns.us-east-1.amazonaws.com/cert.pem",
    "ftp://sns.us-east-1.amazonaws.com/cert.pem",
    "//sns.us-east-1.amazonaws.com/cert.pem",
    "https:sns.us-east-1.amazonaws.com/cert.pem",
    "https://sns.us-east-1.amazonaws.com:8443/cert.pem",
    "https://sns.us-east-1.amazonaws.com:/cert.pem",
    "https://xsns.us-east-1.amazonaws.com/cert.pem",
    "https://sns.us-east-1.amazonaws.com./cert.pem",
    "https://sns.us-east-1.xamazonaws.com/cert.pem",
    "https://sns.amazonaws.com/cert.pem",
    "https://sns.evil.amazonaws.com/cert.pem",
    "https://sqs.us-east-1.amazonaws.com/cert.pem",
    "https://sns.us-east-1.amazonaws.com%2eevil.com/cert.pem",
    "https://sns.us-east-1.amazonaws.com\u3002evil.com/cert.pem",
    "https://sns.us-east-1.amazonaws.com.cn/cert.pem",
    "https://sns.cn-north-1.amazonaws.com/cert.pem",
    "https://52.94.236.248/cert.pem",
    "https://[::1]/cert.pem",
    "https://sns.us-east-1.amazonaws.com/cert.txt",
    "https://sns.us-east-1.amazonaws.com/cert.pem?x=1",
    "https://sns.us-east-1.amazonaws.com/cert.pem#frag",
    "https://sns.us-east-1.amazonaws.com/cert.pem\n",
    " https://sns.us-east-1.amazonaws.com/cert.pem",
    "https://sns.us-east-1.amazonaws.com",
    "",
]


@pytest.mark.parametrize("url", FORGED_CERT_URLS)
def test_forged_certificate_url_is_rejected_before_any_fetch(
    url: str, key: rsa.RSAPrivateKey, certificates: CertificateCache, fetcher: Fetcher
) -> None:
    fetcher.pems[url] = fetcher.pems[CERT_URL]  # were it fetched, it would verify
    with pytest.raises(SnsVerificationError, match="SigningCertURL"):
        check_certificate_url(url)
    with pytest.raises(SnsVerificationError, match="SigningCertURL"):
        certificates.public_key(url)
    with pytest.raises(SnsVerificationError, match="SigningCertURL"):
        verify(_sign(_notification(SigningCertURL=url), key), certificates)
    assert fetcher.calls == []


def test_forged_host_error_names_the_host() -> None:
    with pytest.raises(
        SnsVerificationError,
        match=r"^SigningCertURL host 'evil\.example\.com' is not an sns\.<region>\.amazonaws\.com host$",
    ):
        check_certificate_url("https://evil.example.com/cert.pem")


@pytest.mark.parametrize(
    "url",
    [
        CERT_URL,
        "https://SNS.US-EAST-1.AMAZONAWS.COM/SimpleNotificationService-0123.pem",
        "HTTPS://sns.eu-central-1.amazonaws.com/SimpleNotificationService-0123.pem",
        "https://sns.us-east-1.amazonaws.com:443/SimpleNotificationService-0123.pem",
        "https://sns.cn-north-1.amazonaws.com.cn/SimpleNotificationService-0123.pem",
        "https://sns.us-gov-west-1.amazonaws.com/SimpleNotificationService-0123.pem",
        "https://sns.ap-southeast-2.amazonaws.com/SimpleNotificationService-0123.pem",
    ],
)
def test_genuine_certificate_urls_are_accepted(url: str) -> None:
    check_certificate_url(url)


@pytest.mark.parametrize(
    "url",
    [
        SUBSCRIBE_URL,
        UNSUBSCRIBE_URL,
        "https://sns.cn-northwest-1.amazonaws.com.cn/?Action=ConfirmSubscription&Token=t",
    ],
)
def test_genuine_subscribe_urls_are_accepted(url: str) -> None:
    check_subscribe_url(url)


FORGED_SUBSCRIBE_URLS = [
    "https://evil.com/?Action=ConfirmSubscription",
    "https://sns.us-east-1.amazonaws.com.evil.com/?Action=ConfirmSubscription",
    "https://sns.us-east-1.amazonaws.com@evil.com/?Action=ConfirmSubscription",
    "http://sns.us-east-1.amazonaws.com/?Action=ConfirmSubscription",
    "https://sns.us-east-1.amazonaws.com:8080/?Action=ConfirmSubscription",
    "https://169.254.169.254/latest/meta-data/",
]


@pytest.mark.parametrize("url", FORGED_SUBSCRIBE_URLS)
def test_subscribe_url_on_a_forged_host_is_rejected(
    url: str, key: rsa.RSAPrivateKey, certificates: CertificateCache, fetcher: Fetcher
) -> None:
    with pytest.raises(SnsVerificationError, match="SubscribeURL"):
        check_subscribe_url(url)
    # Even signed by the trusted key, a confirmation pointing elsewhere is refused before any fetch.
    with pytest.raises(SnsVerificationError, match="SubscribeURL"):
        verify(_sign(_confirmation(SubscribeURL=url), key), certificates)
    assert fetcher.calls == []


def test_unsubscribe_url_on_a_forged_host_is_rejected(
    key: rsa.RSAPrivateKey, certificates: CertificateCache, fetcher: Fetcher
) -> None:
    message = _sign(_notification(), key)
    message["UnsubscribeURL"] = "https://evil.example.com/?Action=Unsubscribe"  # not signed, so checked
    with pytest.raises(SnsVerificationError, match=r"UnsubscribeURL host 'evil\.example\.com'"):
        verify(message, certificates)
    assert fetcher.calls == []


# --- certificates ------------------------------------------------------------------------------------


def test_expired_certificate_is_rejected(key: rsa.RSAPrivateKey) -> None:
    expired = _certificate(key, not_before=timedelta(days=-30), not_after=timedelta(minutes=-1))
    certificates = CertificateCache(Fetcher({CERT_URL: expired}))
    with pytest.raises(SnsVerificationError, match="expired"):
        verify(_sign(_notification(), key), certificates)
    assert len(certificates) == 0


def test_certificate_not_yet_valid_is_rejected(key: rsa.RSAPrivateKey) -> None:
    future = _certificate(key, not_before=timedelta(days=1), not_after=timedelta(days=30))
    with pytest.raises(SnsVerificationError, match="not valid before"):
        CertificateCache(Fetcher({CERT_URL: future})).public_key(CERT_URL)


def test_cached_certificate_is_refetched_once_it_expires(
    key: rsa.RSAPrivateKey, monkeypatch: pytest.MonkeyPatch
) -> None:
    fetcher = Fetcher({CERT_URL: _certificate(key, not_after=timedelta(days=1))})
    certificates = CertificateCache(fetcher)
    certificates.public_key(CERT_URL)

    class TwoDaysLater(datetime):
        @classmethod
        def now(cls, tz: Any = None) -> datetime:  # type: ignore[override]
            return datetime.now(tz) + timedelta(days=2)

    monkeypatch.setattr(sns, "datetime", TwoDaysLater)
    with pytest.raises(SnsVerificationError, match="expired"):
        certificates.public_key(CERT_URL)
    assert fetcher.calls == [CERT_URL, CERT_URL]


def test_non_rsa_certificate_is_rejected() -> None:
    ec_pem = _certificate(ec.generate_private_key(ec.SECP256R1()))
    with pytest.raises(SnsVerificationError, match="not RSA"):
        CertificateCache(Fetcher({CERT_URL: ec_pem})).public_key(CERT_URL)


@pytest.mark.parametrize(
    "body", [b"", b"not a certificate", b"-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n"]
)
def test_body_that_is_not_a_certificate_is_rejected(body: bytes) -> None:
    with pytest.raises(SnsVerificationError, match=r"PEM X\.509"):
        CertificateCache(Fetcher({CERT_URL: body})).public_key(CERT_URL)


def test_cache_hit_does_not_fetch_twice(
    key: rsa.RSAPrivateKey, certificates: CertificateCache, fetcher: Fetcher
) -> None:
    verify(_sign(_notification(), key, "1"), certificates)
    verify(_sign(_notification(MessageId="second"), key, "2"), certificates)
    verify(_sign(_confirmation(), key), certificates)
    assert fetcher.calls == [CERT_URL]
    assert CERT_URL in certificates


def test_cache_evicts_the_least_recently_used_beyond_max_entries(pem: bytes) -> None:
    urls = [f"https://sns.us-east-1.amazonaws.com/SimpleNotificationService-{n}.pem" for n in range(4)]
    fetcher = Fetcher(dict.fromkeys(urls, pem))
    certificates = CertificateCache(fetcher, max_entries=2)
    certificates.public_key(urls[0])
    certificates.public_key(urls[1])
    certificates.public_key(urls[0])  # a hit: urls[1] is now the oldest
    certificates.public_key(urls[2])  # evicts urls[1]
    assert len(certificates) == 2
    assert urls[0] in certificates
    assert urls[1] not in certificates
    certificates.public_key(urls[1])  # fetched again, evicting urls[0]
    assert fetcher.calls == [urls[0], urls[1], urls[2], urls[1]]
    assert urls[0] not in certificates


def test_max_entries_must_be_positive() -> None:
    with pytest.raises(ValueError, match="max_entries"):
        CertificateCache(max_entries=0)


def test_failed_fetch_is_a_verification_error_and_is_not_cached(key: rsa.RSAPrivateKey, pem: bytes) -> None:
    calls: list[str] = []

    def flaky(url: str) -> bytes:
        calls.append(url)
        if len(calls) == 1:
            raise OSError("connection reset")
        return pem

    certificates = CertificateCache(flaky)
    message = _sign(_notification(), key)
    with pytest.raises(SnsVerificationError, match="fetching SigningCertURL failed: OSError"):
        verify(message, certificates)
    verify(message, certificates)
    assert calls == [CERT_URL, CERT_URL]


def test_oversize_body_from_a_custom_fetch_is_rejected() -> None:
    with pytest.raises(SnsVerificationError, match="larger than 16384 bytes"):
        CertificateCache(lambda url: b"x" * (16 * 1024 + 1)).public_key(CERT_URL)


# --- the default fetch, over httpx -------------------------------------------------------------------


def _mock_fetch(handler: Any) -> Any:
    transport = httpx.MockTransport(handler)
    return lambda url: sns.fetch_certificate(url, transport=transport)


def test_default_fetch_gets_the_certificate_with_a_short_timeout(key: rsa.RSAPrivateKey, pem: bytes) -> None:
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(200, content=pem)

    certificates = CertificateCache(_mock_fetch(handler))
    verify(_sign(_notification(), key), certificates)
    verify(_sign(_notification(), key), certificates)
    assert [str(request.url) for request in seen] == [CERT_URL]
    assert seen[0].method == "GET"
    assert seen[0].extensions["timeout"] == {"connect": 3.0, "read": 3.0, "write": 3.0, "pool": 3.0}


@pytest.mark.parametrize("status", [301, 302, 403, 404, 500])
def test_default_fetch_rejects_non_200_and_does_not_follow_redirects(status: int, pem: bytes) -> None:
    seen: list[str] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(str(request.url))
        if request.url.host == "evil.example.com":
            return httpx.Response(200, content=pem)
        return httpx.Response(status, headers={"Location": "https://evil.example.com/cert.pem"})

    with pytest.raises(SnsVerificationError, match=f"HTTP {status}"):
        CertificateCache(_mock_fetch(handler)).public_key(CERT_URL)
    assert seen == [CERT_URL]


def test_default_fetch_rejects_an_oversize_declared_body() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, content=b"x" * (16 * 1024 + 1))

    with pytest.raises(SnsVerificationError, match="larger than 16384 bytes"):
        CertificateCache(_mock_fetch(handler)).public_key(CERT_URL)


def test_default_fetch_stops_reading_an_oversize_streamed_body() -> None:
    produced: list[int] = []

    def chunks() -> Any:
        for n in range(1000):
            produced.append(n)
            yield b"x" * 4096

    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, content=chunks())

    with pytest.raises(SnsVerificationError, match="larger than 16384 bytes"):
        CertificateCache(_mock_fetch(handler)).public_key(CERT_URL)
    assert len(produced) < 10


def test_default_fetch_turns_transport_errors_into_verification_errors() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectTimeout("timed out", request=request)

    with pytest.raises(SnsVerificationError, match="fetching SigningCertURL failed: ConnectTimeout"):
        CertificateCache(_mock_fetch(handler)).public_key(CERT_URL)


# --- replay window -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("offset", "error"),
    [
        (timedelta(hours=-1, seconds=-5), "older than 3600 seconds"),
        (timedelta(days=-400), "older than 3600 seconds"),
        (timedelta(minutes=5, seconds=30), "more than 5 minutes in the future"),
        (timedelta(days=1), "more than 5 minutes in the future"),
    ],
)
def test_stale_or_future_timestamp_is_rejected(
    offset: timedelta, error: str, key: rsa.RSAPrivateKey, certificates: CertificateCache, fetcher: Fetcher
) -> None:
    with pytest.raises(SnsVerificationError, match=error):
        verify(_sign(_notification(Timestamp=_timestamp(offset)), key), certificates)
    assert fetcher.calls == []


@pytest.mark.parametrize("offset", [timedelta(minutes=-59), timedelta(minutes=4)])
def test_timestamp_within_the_window_is_accepted(
    offset: timedelta, key: rsa.RSAPrivateKey, certificates: CertificateCache
) -> None:
    verify(_sign(_notification(Timestamp=_timestamp(offset)), key), certificates)


def test_max_age_is_configurable(key: rsa.RSAPrivateKey, certificates: CertificateCache) -> None:
    message = _sign(_notification(Timestamp=_timestamp(timedelta(minutes=-10))), key)
    verify(message, certificates)
    with pytest.raises(SnsVerificationError, match="older than 300 seconds"):
        verify(message, certificates, max_age_seconds=300)


@pytest.mark.parametrize(
    "timestamp",
    [
        "2024-01-02T03:04:05",
        "2024-01-02T03:04:05+00:00",
        "2024-01-02",
        "2024-13-02T03:04:05.000Z",
        "yesterday",
        "2024-01-02T03:04:05.000Z\n",
    ],
)
def test_malformed_timestamp_is_rejected(
    timestamp: str, key: rsa.RSAPrivateKey, certificates: CertificateCache
) -> None:
    with pytest.raises(SnsVerificationError, match="Timestamp"):
        verify(_sign(_notification(Timestamp=timestamp), key), certificates)


def test_timestamp_without_milliseconds_is_accepted(key: rsa.RSAPrivateKey, certificates: CertificateCache) -> None:
    verify(_sign(_notification(Timestamp=datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")), key), certificates)


# --- import cost -------------------------------------------------------------------------------------


def test_importing_the_module_loads_neither_cryptography_nor_httpx() -> None:
    code = (
        "import sys, audience.webhooks.sns as sns\n"
        "sns.check_certificate_url('https://sns.us-east-1.amazonaws.com/c.pem')\n"
        "sns.string_to_sign({'Type': 'Notification', 'Message': 'm', 'MessageId': 'i', 'Timestamp': 't', "
        "'TopicArn': 'a'})\n"
        "sns.CertificateCache()\n"
        "print(sorted(m for m in sys.modules if m.split('.')[0] in ('cryptography', 'httpx', 'httpcore')))\n"
    )
    env = {**os.environ, "PYTHONPATH": str(ROOT / "layers" / "audience")}
    result = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True, check=True, timeout=60
    )
    assert result.stdout.strip() == "[]"
