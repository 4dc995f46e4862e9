"""Import DynamoDB requests: write and read requests per 1,000 rows for new, unchanged and updated contacts.

A chunk worker classifies its rows against the contacts table, then writes: a new contact goes into a
create transaction with up to 22 others (its item, its identity claims, and once per group the chunk
ledger's counts and the record of the rows created), and its secondary items (facets, search terms,
activity, consent) follow in BatchWriteItem requests of up to 25 items; a row matching an existing
contact that changes it is one update transaction; an unchanged row writes nothing. The goals:
BatchWriteItem requests full (25 items) except the last of a chunk, and identity uniqueness (the
conditional claim items) paid for only where a row is new.

On the local stack (moto in-process), an org with the file's custom fields imports, one after the other:

1. new: 1,000 rows, each a contact of its own (benchmarks/importdata.py, `clean`: no invalid or repeated
   rows, so every row reaches the writer);
2. unchanged: the same file again;
3. updated: the same rows with one more tag each;
4. default mapping: the same file as in 1 with the mapping a client gets by default, which adds the
   import's own tag ("Import 2026-11-23 10:30") to every contact, so every row is an update.

Imports 1 to 3 map without the import tag (`"import_tag": false`), so that 2 is unchanged. Each import
runs the state machine's tasks directly (ImportService.create, the file put to the import's key, analyse,
set_mapping, start, then ImportWorker.split, ImportWorker.chunk for each chunk, ImportWorker.finish), so
nothing else shares the table while it runs. During the chunk tasks every DynamoDB request is counted at
the botocore client (`BaseClient._make_api_call`): each operation, the items of each TransactWriteItems
(contact, identity claim, ledger, rows created, counters, others) and of each BatchWriteItem, and the reads
(BatchGetItem with its keys, GetItem, Query). The writer's own count (`ChunkResult.requests`, which the
chunk task returns and publishes as metrics) is shown beside it.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT / "layers" / "audience") not in sys.path:
    sys.path.insert(0, str(ROOT / "layers" / "audience"))  # the layer, as Lambda puts it on the path
RESULTS = ROOT / "benchmarks" / "results"
TEMPLATE = ROOT / "template.yaml"
BATCH = 25
WRITES = ("TransactWriteItems", "BatchWriteItem", "PutItem", "UpdateItem", "DeleteItem")
READS = ("BatchGetItem", "GetItem", "Query", "Scan")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--rows", type=int, default=1000, help="rows in each import (default 1000)")
    parser.add_argument("--output", type=Path, default=RESULTS / "import_writes.json")


class Meter:
    """DynamoDB requests made through any botocore client while `active`."""

    def __init__(self) -> None:
        self.active = False
        self.requests: Counter[str] = Counter()
        self.transaction_items: Counter[str] = Counter()
        self.batch_sizes: list[int] = []
        self.read_keys = 0

    @contextmanager
    def installed(self) -> Iterator[Meter]:
        from botocore.client import BaseClient

        original = BaseClient._make_api_call
        meter = self

        def _make_api_call(client: Any, operation: str, params: dict[str, Any]) -> Any:
            if meter.active and client.meta.service_model.service_name == "dynamodb":
                meter.record(operation, params)
            return original(client, operation, params)

        BaseClient._make_api_call = _make_api_call  # type: ignore[method-assign]
        try:
            yield self
        finally:
            BaseClient._make_api_call = original  # type: ignore[method-assign]

    def record(self, operation: str, params: dict[str, Any]) -> None:
        self.requests[operation] += 1
        if operation == "TransactWriteItems":
            for op in params["TransactItems"]:
                self.transaction_items[_kind(op)] += 1
        elif operation == "BatchWriteItem":
            self.batch_sizes.append(sum(len(v) for v in params["RequestItems"].values()))
        elif operation == "BatchGetItem":
            self.read_keys += sum(len(v["Keys"]) for v in params["RequestItems"].values())


def _kind(op: dict[str, Any]) -> str:
    """What a transaction item writes, from its sort key."""
    ((action, body),) = op.items()
    key = body.get("Item") or body.get("Key") or {}
    sk = key.get("sk", {}).get("S", "")
    if action == "ConditionCheck":
        return "condition check"
    if sk == "#IDENTITY":
        return "identity claim" if action == "Put" else "identity release"
    if sk == "#CONTACT":
        return "contact"
    if sk.startswith("L#"):
        return "ledger"
    if sk.startswith("R#"):
        return "rows created"
    if sk == "#COUNTERS":
        return "counters"
    return f"{action.lower()} other"


class _NoRunner:
    """The state machine is not started: the benchmark runs each task itself."""

    def start(self, name: str, payload: dict[str, Any]) -> None:
        pass


def run_import(stack: Any, org_id: str, path: Path, mapping: dict[str, Any], meter: Meter) -> dict[str, Any]:
    """One import of `path`, its tasks run in order, DynamoDB requests metered during the chunk tasks."""
    from audience.imports import wiring
    from audience.imports.repository import ImportsRepository
    from audience.imports.service import ImportService
    from audience.settings import get_settings

    service = ImportService(
        ImportsRepository(get_settings().contacts_table),
        wiring.files(),
        _NoRunner,  # type: ignore[arg-type]
        org_context=wiring.org_context,
        static_segment=wiring.static_segment,
    )
    worker = wiring.import_worker()
    imp, _ = service.create(org_id, file_name=path.name, size=path.stat().st_size)
    stack.client("s3").put_object(Bucket=wiring.files().bucket, Key=imp.object_key, Body=path.read_bytes())
    service.analyse(org_id, imp.id, {})
    worker.analyse(org_id, imp.id)
    service.set_mapping(org_id, imp.id, mapping)
    started = service.start(org_id, imp.id, consent_confirmed=True, confirmed_by="bench@example.com")
    assert started.run is not None
    run_id = started.run.id
    chunks = worker.split(org_id, imp.id, run_id)["chunks"]
    reported: Counter[str] = Counter()
    begun = time.perf_counter()
    meter.active = True
    try:
        for chunk in chunks:
            reported.update(worker.chunk(org_id, imp.id, run_id, chunk["chunk"])["requests"])
    finally:
        meter.active = False
    seconds = time.perf_counter() - begun
    finished = worker.finish(org_id, imp.id, run_id)
    if finished["status"] != "completed":
        raise RuntimeError(f"the import ended {finished['status']}")
    return {"counts": finished["counts"], "chunks": len(chunks), "reported": dict(reported), "seconds": seconds}


def scenario(name: str, outcome: dict[str, Any], meter: Meter, rows: int) -> dict[str, Any]:
    per = 1000 / rows
    sizes = meter.batch_sizes
    writes = {op: meter.requests[op] for op in WRITES}
    reads = {op: meter.requests[op] for op in READS}
    return {
        "scenario": name,
        "rows": rows,
        "counts": {k: v for k, v in outcome["counts"].items() if v},
        "chunks": outcome["chunks"],
        "chunk_seconds": round(outcome["seconds"], 1),
        "write_requests": writes,
        "write_requests_per_1000_rows": round(sum(writes.values()) * per, 1),
        "writes_per_1000_rows": {op: round(n * per, 1) for op, n in writes.items()},
        "transaction_items_per_1000_rows": {k: round(v * per, 1) for k, v in sorted(meter.transaction_items.items())},
        "batch_write_items": sum(sizes),
        "batch_write_mean_fill": round(sum(sizes) / len(sizes), 1) if sizes else None,
        "batch_writes_not_full": sum(1 for s in sizes if s < BATCH),
        "batch_sizes": dict(sorted(Counter(sizes).items())),
        "read_requests": reads,
        "read_requests_per_1000_rows": round(sum(reads.values()) * per, 1),
        "reads_per_1000_rows": {op: round(n * per, 1) for op, n in reads.items()},
        "batch_get_keys_per_1000_rows": round(meter.read_keys * per, 1),
        "reported_by_writer": outcome["reported"],
    }


def measure(rows: int, directory: Path) -> list[dict[str, Any]]:
    from audience import admin, container
    from benchmarks import importdata
    from devstack.testing import local_stack

    first = importdata.write_csv(directory / "contacts.csv", rows, clean=True)
    tagged = importdata.write_csv(directory / "contacts-tagged.csv", rows, clean=True, extra_tag="spring-sale")
    no_tag = {**importdata.mapping(), "import_tag": False}
    plan = [
        ("new", first, no_tag),
        ("unchanged", first, no_tag),
        ("updated (one more tag)", tagged, no_tag),
        ("default mapping (adds the import tag)", first, importdata.mapping()),
    ]
    found = []
    with local_stack(str(TEMPLATE), parameters={"Stage": "bench"}) as stack, Meter().installed() as meter:
        container.reset()
        org_id = admin.create_org("Bench", default_country="ID")["org_id"]
        for field, type_ in importdata.FIELD_TYPES.items():
            container.org_service().create_field(org_id, field, type_)
        for name, path, mapping in plan:
            meter.requests.clear()
            meter.transaction_items.clear()
            meter.batch_sizes = []
            meter.read_keys = 0
            outcome = run_import(stack, org_id, path, mapping, meter)
            found.append(scenario(name, outcome, meter, rows))
            print(f"  {name}: {found[-1]['counts']} in {outcome['seconds']:.0f} s", flush=True)
        container.reset()
    return found


def run(args: argparse.Namespace) -> bool:
    if str(ROOT) not in sys.path:
        sys.path.insert(0, str(ROOT))
    from benchmarks import importdata

    code = importdata.code_version()  # the code this run loads, before it runs

    with tempfile.TemporaryDirectory(prefix="bench-import-writes-") as directory:
        results = measure(args.rows, Path(directory))

    print(f"\nPer 1,000 rows ({args.rows:,} rows an import):\n")
    print(
        "| Import | Outcome | Write requests | Transact | BatchWrite | Put/Update/Delete "
        "| Identity claims | BatchWrite fill (not full) | Read requests | BatchGet (keys) | GetItem | Query |"
    )
    print("|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for r in results:
        w, rd = r["writes_per_1000_rows"], r["reads_per_1000_rows"]
        single = w["PutItem"] + w["UpdateItem"] + w["DeleteItem"]
        claims = r["transaction_items_per_1000_rows"].get("identity claim", 0)
        fill = f"{r['batch_write_mean_fill']} ({r['batch_writes_not_full']})" if r["batch_write_mean_fill"] else "—"
        outcome = ", ".join(f"{k} {v}" for k, v in r["counts"].items())
        print(
            f"| {r['scenario']} | {outcome} | **{r['write_requests_per_1000_rows']:g}** | {w['TransactWriteItems']:g} "
            f"| {w['BatchWriteItem']:g} | {single:g} | {claims:g} | {fill} | {r['read_requests_per_1000_rows']:g} "
            f"| {rd['BatchGetItem']:g} ({r['batch_get_keys_per_1000_rows']:g}) | {rd['GetItem']:g} | {rd['Query']:g} |"
        )
    print("\nTransaction items per 1,000 rows:")
    for r in results:
        print(f"- {r['scenario']}: {r['transaction_items_per_1000_rows']}")
    print("\nBatchWriteItem sizes (items: requests) and the writer's own request counts:")
    for r in results:
        print(f"- {r['scenario']}: {r['batch_sizes']}; reported {r['reported_by_writer']}")

    new = results[0]
    allowed = new["chunks"]  # the last batch of each chunk may be short
    full_batches = new["batch_writes_not_full"] <= allowed
    claims_only_new = all(r["transaction_items_per_1000_rows"].get("identity claim", 0) == 0 for r in results[1:])
    unchanged_free = results[1]["write_requests"]["TransactWriteItems"] <= results[1]["chunks"]
    print(
        f"\ngoal, full 25-item batches (at most {allowed} short, one a chunk): "
        f"{new['batch_writes_not_full']} short of {sum(new['batch_sizes'].values())} "
        f"(mean {new['batch_write_mean_fill']}) — {'met' if full_batches else 'missed'}"
    )
    print(
        "goal, identity claims only for new rows: "
        f"{'met' if claims_only_new else 'missed'} (new rows: "
        f"{new['transaction_items_per_1000_rows'].get('identity claim', 0):g} claims per 1,000 rows; "
        "unchanged and updated rows: "
        + ", ".join(f"{r['transaction_items_per_1000_rows'].get('identity claim', 0):g}" for r in results[1:])
        + f"); unchanged rows write only the chunk's own bookkeeping: {'yes' if unchanged_free else 'no'}"
    )

    fields = {
        "rows": args.rows,
        "goals": {"full_batches": full_batches, "identity_claims_only_for_new_rows": claims_only_new},
        "scenarios": results,
    }
    importdata.write_results(args.output, "import_writes", fields, code=code)
    return full_batches and claims_only_new
