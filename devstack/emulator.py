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


def _keep_streams(transact: Any) -> Any:
    """moto rolls a cancelled TransactWriteItems back by swapping in deep copies of the tables taken
    before it, stream shards included; stream readers holding the live shard would then never see
    another record. Put the live shard back on the restored table, without the cancelled writes."""

    def transact_write_items(self: Any, transact_items: Any) -> Any:
        live = dict(self.tables)
        lengths = {name: len(t.stream_shard.items) for name, t in live.items() if t.stream_shard is not None}
        try:
            return transact(self, transact_items)
        except Exception:
            for name, table in self.tables.items():
                before = live.get(name)
                if before is None or table is before or name not in lengths:
                    continue
                shard = before.stream_shard
                del shard.items[lengths[name] :]
                shard.table = table
                table.stream_shard = shard
            raise

    return transact_write_items


def serialize_dynamodb() -> None:
    """Run moto's DynamoDB requests one at a time.

    moto's DynamoDB backend is not thread-safe (TransactWriteItems deep-copies whole tables while other
    threads write), and locally requests, pollers and the application's own thread pools all write at
    once. DynamoDB requests never call back into application code, so one lock cannot deadlock.
    """
    global _users
    from moto.dynamodb.models import DynamoDBBackend
    from moto.dynamodb.responses import DynamoHandler
    from moto.dynamodbstreams.responses import DynamoDBStreamsHandler

    with _guard:
        _users += 1
        for handler in (DynamoHandler, DynamoDBStreamsHandler):
            if handler not in _originals:
                _originals[handler] = handler.__dict__.get("call_action")
                handler.call_action = _serialized(handler.call_action)  # type: ignore[method-assign]
        if DynamoDBBackend not in _originals:
            _originals[DynamoDBBackend] = DynamoDBBackend.__dict__.get("transact_write_items")
            DynamoDBBackend.transact_write_items = _keep_streams(DynamoDBBackend.transact_write_items)  # type: ignore[method-assign]


def release_dynamodb() -> None:
    """Undo `serialize_dynamodb()` once its last user is done."""
    global _users
    with _guard:
        _users = max(0, _users - 1)
        if _users:
            return
        for owner, original in _originals.items():
            name = "transact_write_items" if owner.__name__ == "DynamoDBBackend" else "call_action"
            if original is None:
                delattr(owner, name)
            else:
                setattr(owner, name, original)
        _originals.clear()
