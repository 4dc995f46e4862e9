"""What moto needs to host a whole application in one process: its configuration and a DynamoDB lock."""

from __future__ import annotations

import threading
from typing import Any

# Step Functions definitions are executed (not just stored), and Lambda needs no Docker.
MOTO_CONFIG: dict[str, Any] = {"stepfunctions": {"execute_state_machine": True}, "lambda": {"use_docker": False}}

_lock = threading.RLock()
_guard = threading.Lock()
_originals: dict[type, Any] = {}
_users = 0


def _serialized(call_action: Any) -> Any:
    def call_action_serialized(self: Any) -> Any:
        with _lock:
            return call_action(self)

    return call_action_serialized


def serialize_dynamodb() -> None:
    """Run moto's DynamoDB requests one at a time.

    moto's DynamoDB backend is not thread-safe (TransactWriteItems deep-copies whole tables while other
    threads write), and locally requests, pollers and the application's own thread pools all write at
    once. DynamoDB requests never call back into application code, so one lock cannot deadlock.
    """
    global _users
    from moto.dynamodb.responses import DynamoHandler
    from moto.dynamodbstreams.responses import DynamoDBStreamsHandler

    with _guard:
        _users += 1
        for handler in (DynamoHandler, DynamoDBStreamsHandler):
            if handler not in _originals:
                _originals[handler] = handler.__dict__.get("call_action")
                handler.call_action = _serialized(handler.call_action)  # type: ignore[method-assign]


def release_dynamodb() -> None:
    """Undo `serialize_dynamodb()` once its last user is done."""
    global _users
    with _guard:
        _users = max(0, _users - 1)
        if _users:
            return
        for handler, original in _originals.items():
            if original is None:
                del handler.call_action
            else:
                handler.call_action = original  # type: ignore[method-assign]
        _originals.clear()
