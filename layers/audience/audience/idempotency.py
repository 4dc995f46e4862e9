"""Calls made once per Idempotency-Key: a retried call answers as the first did without doing it again.

The key's record (see BroadcastsRepository.begin_request) holds a fingerprint of the request body, the
state of the call and, once done, its answer. A call that holds a key longer than `stale_after` seconds
without finishing is taken to have stopped: the next call with the key takes it over and continues with
the same `claim`, so the id it derives for what it makes (a send, a message) is the one the stopped call
used, and the work is picked up rather than done twice.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Callable
from typing import Any

from audience import ids
from audience.errors import ConflictError, ValidationError

IN_PROGRESS_SECONDS = 120


class IdempotencyMismatch(ValidationError):
    """The Idempotency-Key was used before with a different request body."""


def once(
    store: Any,
    org_id: str,
    scope: str,
    key: str | None,
    body: dict[str, Any],
    call: Callable[[str], tuple[int, dict[str, Any]]],
    *,
    prefix: str,
    stale_after: int = IN_PROGRESS_SECONDS,
) -> tuple[int, dict[str, Any]]:
    """Run `call` once for `key` within `scope`: (HTTP status, answer). `call` receives the id of what it
    makes, `prefix` + an id derived from the key's claim (a new id when there is no key)."""
    if key is None:
        return call(prefix + ids.ulid())
    fingerprint = hashlib.sha256(json.dumps(body, sort_keys=True, separators=(",", ":")).encode()).hexdigest()
    owned, record = store.begin_request(org_id, scope, key, fingerprint, int(time.time()), stale_after=stale_after)
    if not owned:
        if record.get("fingerprint") != fingerprint:
            raise IdempotencyMismatch.for_field(
                "Idempotency-Key", key, "was already used with a different request body"
            )
        if record.get("state") == "done":
            return int(record["http_status"]), json.loads(record["body"])
        raise ConflictError("a request with this Idempotency-Key is still being processed; retry shortly")
    try:
        status, answer = call(prefix + ids.derived(f"{key}:{record['claim']}"))
    except Exception:
        store.release_request(org_id, scope, key)
        raise
    store.complete_request(org_id, scope, key, status, answer)
    return status, answer
