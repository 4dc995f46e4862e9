"""What moto needs to host a whole application in one process: its configuration, a DynamoDB lock, and
Queries that read one partition rather than sorting the whole table."""

from __future__ import annotations

import copy
import functools
import threading
from typing import Any

# Step Functions definitions are executed (not just stored), and Lambda needs no Docker.
MOTO_CONFIG: dict[str, Any] = {"stepfunctions": {"execute_state_machine": True}, "lambda": {"use_docker": False}}

_lock = threading.RLock()
_guard = threading.Lock()
_originals: dict[tuple[Any, str], Any] = {}
_users = 0


def _serialized(call_action: Any) -> Any:
    def call_action_serialized(self: Any) -> Any:
        with _lock:
            return call_action(self)

    return call_action_serialized


class _CopyWithoutTables:
    """`copy` as moto's DynamoDB backend module sees it: a Table is not deep-copied.

    moto backs every TransactWriteItems up by deep-copying each table it touches, which costs time in
    proportion to the table's size on every transaction (minutes for a few thousand contacts), and then
    rolls a cancelled one back by swapping the copies in, stream shard included, so stream readers
    holding the live shard never saw another record. `_rollback_touched_items` keeps pre-images of the
    items a transaction touches instead, and puts them back in place when it is cancelled.
    """

    def __getattr__(self, name: str) -> Any:
        return getattr(copy, name)

    @staticmethod
    def deepcopy(value: Any, memo: Any = None) -> Any:
        from moto.dynamodb.models.table import Table

        return value if isinstance(value, Table) else copy.deepcopy(value, memo)


def _rollback_touched_items(transact: Any) -> Any:
    def transact_write_items(self: Any, transact_items: Any) -> Any:
        from moto.dynamodb.models.dynamo_type import DynamoType

        saved: list[tuple[Any, Any, Any, Any]] = []
        streams: dict[int, tuple[Any, int]] = {}
        for entry in transact_items:
            op = next(iter(entry.values()), {})
            table = self.tables.get(op.get("TableName")) if isinstance(op, dict) else None
            if table is None:
                continue
            key = op.get("Key") or op.get("Item") or {}
            try:
                hash_key = DynamoType(key[table.hash_key_attr])
                range_key = DynamoType(key[table.range_key_attr]) if table.range_key_attr else None
                current = table.get_item(hash_key, range_key)
            except Exception:  # noqa: S112 - a malformed key: moto itself rejects the transaction
                continue
            saved.append((table, hash_key, range_key, copy.deepcopy(current) if current is not None else None))
            if table.stream_shard is not None:
                streams.setdefault(id(table), (table.stream_shard, len(table.stream_shard.items)))
        try:
            return transact(self, transact_items)
        except Exception:
            for table, hash_key, range_key, before in reversed(saved):
                if range_key is None:
                    if before is None:
                        table.items.pop(hash_key, None)
                    else:
                        table.items[hash_key] = before
                elif before is None:
                    table.items.get(hash_key, {}).pop(range_key, None)
                else:
                    table.items[hash_key][range_key] = before
            for shard, length in streams.values():
                del shard.items[length:]
            raise

    return transact_write_items


_partition = threading.local()


def _partition_query(query: Any) -> Any:
    """moto's Table.query picks a partition's items out of `all_items()`, which sorts every item of the table
    first: each Query costs time in proportion to the whole table (a consent lookup took 50 ms with a few
    thousand contacts). Here `all_items()` gives only the items a Query can match, sorted the same way, so
    the answers (and their order) are moto's own at a cost closer to DynamoDB's."""

    def partition_query(self: Any, hash_key: Any, *args: Any, **kwargs: Any) -> Any:
        index_name = kwargs.get("index_name", args[6] if len(args) > 6 else None)
        if index_name and kwargs.get("hash_key_conditions"):
            _partition.only = (self, "index", list(kwargs["hash_key_conditions"]))
        elif not index_name and hash_key is not None:
            _partition.only = (self, "table", hash_key)
        else:
            return query(self, hash_key, *args, **kwargs)
        try:
            return query(self, hash_key, *args, **kwargs)
        finally:
            _partition.only = None

    return partition_query


def _partition_items(all_items: Any) -> Any:
    def partition_items(self: Any) -> list[Any]:
        only = getattr(_partition, "only", None)
        if only is None or only[0] is not self:
            return all_items(self)
        if only[1] == "table":
            partition = self.items.get(only[2])
            if partition is None:
                return []
            items = list(partition.values()) if self.range_key_attr else [partition]
        else:
            every = (i for v in self.items.values() for i in (v.values() if self.range_key_attr else [v]))
            items = [i for i in every if all(i.attrs.get(a) and i.attrs.get(a) == v for a, v in only[2])]
        return sorted(items, key=lambda x: (x.hash_key, x.range_key) if x.range_key else x.hash_key)

    return partition_items


def _retention_from_the_queue(_original: Any) -> Any:
    """moto checks each message it receives against the queue's retention period by building every
    attribute of the queue three times over, message counts included: a receive cost time in proportion to
    the messages held, for every message it returned. The period is read from the queue itself instead."""

    def is_message_valid_based_on_retention_period(self: Any, queue_name: str, message: Any) -> bool:
        from moto.core.utils import unix_time

        retention_period = int(self.get_queue(queue_name).message_retention_period)
        return retention_period + message.sent_timestamp / 1000 > unix_time()

    return is_message_valid_based_on_retention_period


def _parse_once(parse: Any) -> Any:
    """moto parses the JSONPath of every input path of a rule's target again for every event it puts
    (a few hundred microseconds each, ten paths an event); a parsed path is immutable, so one is kept per
    text."""
    return functools.lru_cache(maxsize=1024)(parse)


def _patch(owner: Any, name: str, wrap: Any) -> None:
    if (owner, name) not in _originals:
        _originals[(owner, name)] = owner.__dict__.get(name)
        setattr(owner, name, wrap(getattr(owner, name)))


def serialize_dynamodb() -> None:
    """Run moto's DynamoDB requests one at a time.

    moto's DynamoDB backend is not thread-safe (TransactWriteItems deep-copies whole tables while other
    threads write), and locally requests, pollers and the application's own thread pools all write at
    once. DynamoDB requests never call back into application code, so one lock cannot deadlock.

    Also installs the emulator's speed-ups: a Query reads its own partition, a receive no longer counts a
    queue's messages once per message returned, and an event's input paths are parsed once.
    """
    global _users
    from jsonpath_ng import ext as jsonpath_ext
    from moto.dynamodb import models
    from moto.dynamodb.models import DynamoDBBackend
    from moto.dynamodb.models.table import Table
    from moto.dynamodb.responses import DynamoHandler
    from moto.dynamodbstreams.responses import DynamoDBStreamsHandler
    from moto.sqs.models import SQSBackend

    with _guard:
        _users += 1
        for handler in (DynamoHandler, DynamoDBStreamsHandler):
            _patch(handler, "call_action", _serialized)
        _patch(DynamoDBBackend, "transact_write_items", _rollback_touched_items)
        _patch(Table, "query", _partition_query)
        _patch(Table, "all_items", _partition_items)
        _patch(SQSBackend, "is_message_valid_based_on_retention_period", _retention_from_the_queue)
        _patch(jsonpath_ext, "parse", _parse_once)
        models.copy = _CopyWithoutTables()  # type: ignore[attr-defined]


def release_dynamodb() -> None:
    """Undo `serialize_dynamodb()` once its last user is done."""
    global _users
    with _guard:
        _users = max(0, _users - 1)
        if _users:
            return
        from moto.dynamodb import models

        models.copy = copy  # type: ignore[attr-defined]
        for (owner, name), original in _originals.items():
            if original is None:
                delattr(owner, name)
            else:
                setattr(owner, name, original)
        _originals.clear()
