"""DynamoDB access for imports (the contacts table).

Key design (keys `pk`/`sk`; TTL `expires_at`, 30 days after the import was created):

| item            | pk                          | sk                     |
|-----------------|-----------------------------|------------------------|
| import          | `O#{org}#IMPORTS`           | `{import id}`          |
| chunk ledger    | `O#{org}#IMPORT#{import}`   | `L#{run}#{chunk:05d}`  |
| chunk samples   | `O#{org}#IMPORT#{import}`   | `S#{run}#{chunk:05d}`  |
| rows created    | `O#{org}#IMPORT#{import}`   | `R#{run}#{chunk:05d}#{first row:08d}` |

- An import by id: get; another org's id is another key, so never found. An org's imports, newest first:
  query its partition backwards (ids are ULIDs).
- Every status change is a conditional update on the import's `version`, so two requests (start and
  cancel, a retried task) never both win.
- A chunk's ledger is the exactly-once record of what the chunk wrote: each contact transaction of the
  chunk also adds its outcome (`n:created`, `n:updated`) and its counter deltas (`c:{counter}`) to the
  ledger, so a worker retried after a crash finds the rows it already wrote counted once. When the chunk
  ends, one transaction sets the counts of rows that wrote nothing, marks the ledger `folded` and adds
  its counter deltas to the org's contact counters: counters move once per chunk, not once per row, and
  never twice. Every write also moves the ledger's `seq`, and the fold is conditional on the `seq` it
  read, so a write landing while the ledger is being folded is never left out. Progress is the sum of
  the run's ledgers (a few hundred small items).
- Each create transaction also records the rows it created (`R#`), so that a retried chunk never creates
  a row's contact twice, even when the contact was deleted in between.
- Samples (the first rows of each outcome) are a separate item, written once, so that the ledger
  stays small: every contact transaction of the chunk rewrites it.
"""

from __future__ import annotations

from typing import Any

from botocore.exceptions import ClientError

from audience import aws
from audience.contacts import keys as contact_keys
from audience.contacts.repository import deserialize, serialize
from audience.errors import ConflictError, NotFoundError
from audience.imports.models import Import, Mapping, Run

COUNT_PREFIX = "n:"
DELTA_PREFIX = "c:"
SEQUENCE = "seq"


def imports_pk(org_id: str) -> str:
    return f"O#{org_id}#IMPORTS"


def ledger_pk(org_id: str, import_id: str) -> str:
    return f"O#{org_id}#IMPORT#{import_id}"


def ledger_sk(run_id: str, chunk: int) -> str:
    return f"L#{run_id}#{chunk:05d}"


def samples_sk(run_id: str, chunk: int) -> str:
    return f"S#{run_id}#{chunk:05d}"


def created_sk(run_id: str, chunk: int) -> str:
    return f"R#{run_id}#{chunk:05d}#"


def _run_to_item(run: Run | None) -> dict[str, Any] | None:
    if run is None:
        return None
    return {
        "id": run.id,
        "kind": run.kind,
        "started_at": run.started_at,
        "rows": run.rows,
        "chunks": run.chunks,
        "finished_at": run.finished_at,
        "counts": run.counts or None,
        "samples": run.samples or None,
        "error_report": run.error_report,
        "consent": run.consent,
    }


def _run_from_item(item: dict[str, Any] | None) -> Run | None:
    if not item:
        return None
    return Run(
        id=item["id"],
        kind=item["kind"],
        started_at=item["started_at"],
        rows=_int(item.get("rows")),
        chunks=_int(item.get("chunks")),
        finished_at=item.get("finished_at"),
        counts={k: int(v) for k, v in (item.get("counts") or {}).items()},
        samples={k: list(v) for k, v in (item.get("samples") or {}).items()},
        error_report=item.get("error_report"),
        consent=item.get("consent"),
    )


def _int(value: Any) -> int | None:
    return None if value is None else int(value)


def import_to_item(imp: Import) -> dict[str, Any]:
    return {
        "pk": imports_pk(imp.org_id),
        "sk": imp.id,
        "type": "import",
        "id": imp.id,
        "org_id": imp.org_id,
        "kind": imp.kind,
        "status": imp.status,
        "file_name": imp.file_name,
        "created_at": imp.created_at,
        "expires_at": imp.expires_at,
        "size": imp.size,
        "object_key": imp.object_key,
        "layout": imp.layout,
        "skip_rows": imp.skip_rows,
        "has_header": imp.has_header,
        "options": imp.options or None,
        "columns": imp.columns or None,
        "mapping": imp.mapping.to_dict() if imp.mapping else None,
        "run": _run_to_item(imp.run),
        "dry_run": _run_to_item(imp.dry_run),
        "error": imp.error,
        "version": imp.version,
    }


def import_from_item(item: dict[str, Any]) -> Import:
    return Import(
        id=item["id"],
        org_id=item["org_id"],
        kind=item["kind"],
        status=item["status"],
        file_name=item["file_name"],
        created_at=item["created_at"],
        expires_at=int(item["expires_at"]),
        size=_int(item.get("size")),
        object_key=item.get("object_key", ""),
        layout=item.get("layout"),
        skip_rows=int(item.get("skip_rows", 0)),
        has_header=bool(item.get("has_header", True)),
        options=dict(item.get("options") or {}),
        columns=list(item.get("columns") or []),
        mapping=Mapping.from_dict(item["mapping"]) if item.get("mapping") else None,
        run=_run_from_item(item.get("run")),
        dry_run=_run_from_item(item.get("dry_run")),
        error=item.get("error"),
        version=int(item.get("version", 1)),
    )


class ImportsRepository:
    """Import records, their chunk ledgers and samples."""

    def __init__(self, table_name: str) -> None:
        self.table_name = table_name

    @property
    def _client(self) -> Any:
        return aws.client("dynamodb")

    # -- imports ------------------------------------------------------------------------------------

    def create(self, imp: Import) -> None:
        self._client.put_item(
            TableName=self.table_name,
            Item=serialize(import_to_item(imp)),
            ConditionExpression="attribute_not_exists(pk)",
        )

    def get(self, org_id: str, import_id: str) -> Import:
        response = self._client.get_item(
            TableName=self.table_name, Key=serialize({"pk": imports_pk(org_id), "sk": import_id}), ConsistentRead=True
        )
        if "Item" not in response:
            raise NotFoundError(f"import {import_id} not found")
        return import_from_item(deserialize(response["Item"]))

    def page(self, org_id: str, *, after: str | None, limit: int) -> tuple[list[Import], str | None]:
        kwargs: dict[str, Any] = {
            "TableName": self.table_name,
            "KeyConditionExpression": "pk = :pk",
            "ExpressionAttributeValues": serialize({":pk": imports_pk(org_id)}),
            "ScanIndexForward": False,
            "Limit": limit,
        }
        if after:
            kwargs["ExclusiveStartKey"] = serialize({"pk": imports_pk(org_id), "sk": after})
        response = self._client.query(**kwargs)
        items = [import_from_item(deserialize(i)) for i in response["Items"]]
        return items, (items[-1].id if response.get("LastEvaluatedKey") and items else None)

    def replace(self, imp: Import, *, expected_version: int) -> Import:
        """Write `imp` (its version moved on by one) if the stored import still has `expected_version`;
        ConflictError otherwise (somebody else changed it first)."""
        try:
            self._client.put_item(
                TableName=self.table_name,
                Item=serialize(import_to_item(imp)),
                ConditionExpression="version = :v",
                ExpressionAttributeValues=serialize({":v": expected_version}),
            )
        except ClientError as error:
            if error.response["Error"]["Code"] == "ConditionalCheckFailedException":
                raise ConflictError(f"import {imp.id} changed while it was being updated; retry") from None
            raise
        return imp

    # -- ledgers ------------------------------------------------------------------------------------

    def ledger_key(self, org_id: str, import_id: str, run_id: str, chunk: int) -> dict[str, Any]:
        return serialize({"pk": ledger_pk(org_id, import_id), "sk": ledger_sk(run_id, chunk)})

    def ledger_add(self, key: dict[str, Any], values: dict[str, int]) -> dict[str, Any]:
        """A transaction item adding `values` (names such as `n:created`, `c:total`) to a ledger; it fails
        once the ledger is folded, so a write can never be counted after its chunk closed."""
        changes = {name: value for name, value in values.items() if value}
        changes[SEQUENCE] = 1  # every write moves the ledger on, so a fold can tell it read the last one
        names = {f"#a{i}": name for i, name in enumerate(changes)}
        names["#f"] = "folded"
        update = "ADD " + ", ".join(f"#a{i} :a{i}" for i in range(len(changes)))
        attribute_values = {f":a{i}": value for i, value in enumerate(changes.values())}
        return {
            "Update": {
                "TableName": self.table_name,
                "Key": key,
                "UpdateExpression": update,
                "ConditionExpression": "attribute_not_exists(#f)",
                "ExpressionAttributeNames": names,
                "ExpressionAttributeValues": serialize(attribute_values),
            }
        }

    def ledger(self, org_id: str, import_id: str, run_id: str, chunk: int) -> dict[str, Any]:
        response = self._client.get_item(
            TableName=self.table_name, Key=self.ledger_key(org_id, import_id, run_id, chunk), ConsistentRead=True
        )
        return deserialize(response["Item"]) if "Item" in response else {}

    def ledgers(self, org_id: str, import_id: str, run_id: str, *, prefix: str = "L#") -> list[dict[str, Any]]:
        """Every ledger (or, with prefix `S#`, every samples item) of a run."""
        items: list[dict[str, Any]] = []
        kwargs: dict[str, Any] = {
            "TableName": self.table_name,
            "KeyConditionExpression": "pk = :pk AND begins_with(sk, :run)",
            "ExpressionAttributeValues": serialize({":pk": ledger_pk(org_id, import_id), ":run": f"{prefix}{run_id}#"}),
            "ConsistentRead": True,
        }
        while True:
            response = self._client.query(**kwargs)
            items.extend(deserialize(i) for i in response["Items"])
            if "LastEvaluatedKey" not in response:
                return items
            kwargs["ExclusiveStartKey"] = response["LastEvaluatedKey"]

    def close_ledger(
        self,
        org_id: str,
        import_id: str,
        run_id: str,
        chunk: int,
        *,
        counts: dict[str, int],
        fold: bool,
        expires_at: int,
    ) -> bool:
        """End a chunk: set the counts of rows that wrote nothing, mark the ledger folded and (with `fold`)
        add its counter deltas to the org's counters, in one transaction. False when it was folded already."""
        key = self.ledger_key(org_id, import_id, run_id, chunk)
        for _ in range(10):
            ledger = self.ledger(org_id, import_id, run_id, chunk)
            if ledger.get("folded"):
                return False
            try:
                self._client.transact_write_items(
                    TransactItems=self._close_ops(org_id, chunk, key, ledger, counts, fold=fold, expires_at=expires_at)
                )
            except ClientError as error:
                if error.response["Error"]["Code"] != "TransactionCanceledException":
                    raise
                reasons = [r.get("Code") for r in error.response.get("CancellationReasons") or []]
                if reasons[:1] in (["ConditionalCheckFailed"], ["TransactionConflict"]):
                    continue  # a write landed after the read (or it was folded meanwhile): read it again
                raise
            return True
        raise ConflictError(f"the ledger of chunk {chunk} kept changing while it was being closed; retry")

    def _close_ops(
        self,
        org_id: str,
        chunk: int,
        key: dict[str, Any],
        ledger: dict[str, Any],
        counts: dict[str, int],
        *,
        fold: bool,
        expires_at: int,
    ) -> list[dict[str, Any]]:
        """Set the counts and `folded`, on condition that the ledger is still the one read (its sequence),
        and add its counter deltas to the org's counters."""
        names = {"#f": "folded", "#x": "expires_at", "#q": SEQUENCE}
        values: dict[str, Any] = {":yes": True, ":x": expires_at}
        sets = ["#f = :yes", "#x = :x"]
        condition = "attribute_not_exists(#f) AND attribute_not_exists(#q)"
        if SEQUENCE in ledger:
            values[":q"] = int(ledger[SEQUENCE])
            condition = "attribute_not_exists(#f) AND #q = :q"
        for i, (name, value) in enumerate(counts.items()):
            names[f"#n{i}"] = f"{COUNT_PREFIX}{name}"
            values[f":n{i}"] = value
            sets.append(f"#n{i} = :n{i}")
        ops: list[dict[str, Any]] = [
            {
                "Update": {
                    "TableName": self.table_name,
                    "Key": key,
                    "UpdateExpression": "SET " + ", ".join(sets),
                    "ConditionExpression": condition,
                    "ExpressionAttributeNames": names,
                    "ExpressionAttributeValues": serialize(values),
                }
            }
        ]
        deltas = {k[len(DELTA_PREFIX) :]: int(v) for k, v in ledger.items() if k.startswith(DELTA_PREFIX) and int(v)}
        if fold and deltas:
            counter_names = {f"#c{i}": name for i, name in enumerate(deltas)}
            counter_values = {f":c{i}": value for i, value in enumerate(deltas.values())}
            ops.append(
                {
                    "Update": {
                        "TableName": self.table_name,
                        "Key": serialize(
                            {
                                "pk": contact_keys.counters_pk(org_id, chunk % contact_keys.SHARDS),
                                "sk": contact_keys.COUNTERS_SK,
                            }
                        ),
                        "UpdateExpression": "ADD " + ", ".join(f"#c{i} :c{i}" for i in range(len(deltas))),
                        "ExpressionAttributeNames": counter_names,
                        "ExpressionAttributeValues": serialize(counter_values),
                    }
                }
            )
        return ops

    # -- rows created -------------------------------------------------------------------------------

    def created_rows_op(
        self, org_id: str, import_id: str, run_id: str, chunk: int, rows: list[int], *, expires_at: int
    ) -> dict[str, Any]:
        """A transaction item recording which rows of a chunk a create transaction created: written with
        the contacts, so a retried chunk knows them even if a contact was deleted since."""
        return {
            "Put": {
                "TableName": self.table_name,
                "Item": serialize(
                    {
                        "pk": ledger_pk(org_id, import_id),
                        "sk": f"{created_sk(run_id, chunk)}{rows[0]:08d}",
                        "rows": rows,
                        "expires_at": expires_at,
                    }
                ),
                "ConditionExpression": "attribute_not_exists(pk)",
            }
        }

    def created_rows(self, org_id: str, import_id: str, run_id: str, chunk: int) -> set[int]:
        found: set[int] = set()
        kwargs: dict[str, Any] = {
            "TableName": self.table_name,
            "KeyConditionExpression": "pk = :pk AND begins_with(sk, :prefix)",
            "ExpressionAttributeValues": serialize(
                {":pk": ledger_pk(org_id, import_id), ":prefix": created_sk(run_id, chunk)}
            ),
            "ConsistentRead": True,
        }
        while True:
            response = self._client.query(**kwargs)
            for item in response["Items"]:
                found.update(int(r) for r in deserialize(item)["rows"])
            if "LastEvaluatedKey" not in response:
                return found
            kwargs["ExclusiveStartKey"] = response["LastEvaluatedKey"]

    def put_samples(
        self, org_id: str, import_id: str, run_id: str, chunk: int, samples: dict[str, Any], *, expires_at: int
    ) -> None:
        self._client.put_item(
            TableName=self.table_name,
            Item=serialize(
                {
                    "pk": ledger_pk(org_id, import_id),
                    "sk": samples_sk(run_id, chunk),
                    "samples": samples or None,
                    "expires_at": expires_at,
                }
            ),
        )


def ledger_counts(ledger: dict[str, Any]) -> dict[str, int]:
    """The outcome counts of a ledger (`n:created` -> created)."""
    return {k[len(COUNT_PREFIX) :]: int(v) for k, v in ledger.items() if k.startswith(COUNT_PREFIX)}
