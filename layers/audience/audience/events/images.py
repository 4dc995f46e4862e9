"""Plain values of DynamoDB stream images (numbers as int or float, never Decimal, so they serialise)."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from boto3.dynamodb.types import TypeDeserializer

_DESERIALIZER = TypeDeserializer()


def plain(value: Any) -> Any:
    if isinstance(value, Decimal):
        return int(value) if value == value.to_integral_value() else float(value)
    if isinstance(value, dict):
        return {k: plain(v) for k, v in value.items()}
    if isinstance(value, list | set | tuple):
        return [plain(v) for v in value]
    return value


def image(record: Mapping[str, Any], name: str) -> dict[str, Any]:
    """The record's NewImage or OldImage as plain values ({} when absent)."""
    raw = record.get("dynamodb", {}).get(name) or {}
    return {k: plain(_DESERIALIZER.deserialize(v)) for k, v in raw.items()}


def keys(record: Mapping[str, Any]) -> tuple[str, str]:
    raw = record.get("dynamodb", {}).get("Keys", {})
    return raw.get("pk", {}).get("S", ""), raw.get("sk", {}).get("S", "")


def recorded_at(record: Mapping[str, Any]) -> str:
    """When the stream recorded the change (ApproximateCreationDateTime, epoch seconds), as ISO 8601 UTC."""
    seconds = record.get("dynamodb", {}).get("ApproximateCreationDateTime")
    moment = datetime.fromtimestamp(float(seconds), UTC) if seconds is not None else datetime.now(UTC)
    return f"{moment:%Y-%m-%dT%H:%M:%S}.{moment.microsecond // 1000:03d}Z"


def _parse(stamp: Any) -> datetime | None:
    if not isinstance(stamp, str) or not stamp:
        return None
    try:
        moment = datetime.fromisoformat(stamp.replace("Z", "+00:00"))
    except ValueError:
        return None
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def occurred_at(record: Mapping[str, Any], *stamps: Any) -> str:
    """When a change without its own timestamp happened: the latest of when the stream recorded it (whole
    seconds, so earlier than a write's millisecond timestamp in the same second) and the timestamps the
    item carried (its last update, when the membership began...), which all come before the change. So a
    removal never appears to precede the write it follows within the same second."""
    found = [moment for moment in map(_parse, stamps) if moment is not None]
    if not found:
        return recorded_at(record)
    latest = max(found)
    recorded = _parse(recorded_at(record))
    if recorded is not None and recorded > latest:
        latest = recorded
    latest = latest.astimezone(UTC)
    return f"{latest:%Y-%m-%dT%H:%M:%S}.{latest.microsecond // 1000:03d}Z"
