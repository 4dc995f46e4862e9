"""Import row pipeline: CPU time per row of reading, mapping, validating and writing a contact file, against a baseline.

An import reads every row of the upload once in the split (parse the CSV, map the cells, validate and
normalise phone, email, names, custom fields and tags, drop the file's own duplicates, write chunk files)
and once more in the chunk workers (read the chunk back, classify each record, build the DynamoDB writes
of the new contacts). This benchmark measures the CPU time of that whole pipeline per data row over a
realistic file (benchmarks/importdata.py: 20,000 rows by default, names in several scripts, phones in
mixed national and international forms, about 5% invalid rows and 1% in-file duplicates), next to a
baseline measured in the same run over the same file: the csv module reading it, plus phonenumbers
parsing and formatting each phone (default region ID) and email-validator checking each email (no DNS).
The baseline is the least any importer built on those libraries does, so the ratio says what the
pipeline adds to it and carries over between machines where microseconds do not.

The pipeline runs the production code in stages, each timed with time.process_time_ns:

- read + map: `files.read_rows` with the layout `files.detect` found, the split's row numbering,
  `RowMapper.map`, and the rejected rows written to the error part, as `ImportWorker.split` does;
- dedupe: the `IdentitySet` checks and adds of the split (repeats also go to the error part);
- chunk JSON: `ImportFiles.put_chunk` and `ImportFiles.chunk` (JSON lines written, then read back),
  against an in-memory S3 stand-in;
- chunk writer: `ContactChunkWriter.run` for every chunk, as a chunk worker runs it, against a DynamoDB
  stand-in that finds nothing (every row is new) and accepts every write. That covers classification
  (identity, contact and do-not-contact lookup keys, `_new_contact`) and the writes: create transactions
  (contact item, identity claims, ledger counts) and the BatchWriteItem items (facets, search terms,
  activity, consent), all through `serialize`. It is reported in two parts, classify and build writes.
  botocore's own request serialisation is not included (it is the same for any code that writes).

One warm-up round is discarded, then 5 rounds (`--rounds`) each run the baseline then the pipeline;
medians are compared. As a check that the staged version is the worker's loop, each round also runs
`ImportWorker.split` itself over the file (S3 and the import record stubbed) and the first round checks
that it writes byte-identical chunks. Two costs inside the chunk writer are also measured apart, after the
rounds: `serialize` over every item and key the writer serialized in one run (captured, then timed alone),
and `national_digits` over the new contacts' phones (their search items parse each phone again).
`--profile` prints where the pipeline's time goes (cProfile).
"""

from __future__ import annotations

import argparse
import contextlib
import cProfile
import csv
import io
import os
import pstats
import statistics
import sys
import tempfile
import time
from collections import Counter
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT / "layers" / "audience") not in sys.path:
    sys.path.insert(0, str(ROOT / "layers" / "audience"))  # the layer, as Lambda puts it on the path
RESULTS = ROOT / "benchmarks" / "results"
GOAL_RATIO = 1.5

ORG_ID = "org_01jd7z8k2m3n4p5q6r7s8t9v0x"
IMPORT_ID = "imp_01jd7z8k2m3n4p5q6r7s8t9v0y"
RUN_ID = "run_01jd7z8k2m3n4p5q6r7s8t9v0z"
STARTED_AT = "2026-11-23T10:30:00.000Z"
TABLE = "bench-contacts"
STAGES = ("read_map", "dedupe", "chunk_json", "classify", "build_writes")
STAGE_NAMES = {
    "read_map": "read + map (parse, validate, normalise)",
    "dedupe": "dedupe (IdentitySet)",
    "chunk_json": "chunk JSON (write + read back)",
    "classify": "chunk writer: classify",
    "build_writes": "chunk writer: build writes",
}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--rows", type=int, default=20_000, help="data rows in the file (default 20000)")
    parser.add_argument("--rounds", type=int, default=5, help="measured rounds (one warm-up round is added)")
    parser.add_argument("--profile", action="store_true", help="also print the pipeline's top functions (cProfile)")
    parser.add_argument("--output", type=Path, default=RESULTS / "import_pipeline.json")


# -- stand-ins for S3 and DynamoDB ----------------------------------------------------------------


class MemoryS3:
    """put_object/get_object on a dict: what ImportFiles needs for chunks and the upload."""

    def __init__(self) -> None:
        self.objects: dict[str, bytes] = {}

    def put_object(self, *, Bucket: str, Key: str, Body: Any, **_: Any) -> dict[str, Any]:
        self.objects[Key] = Body if isinstance(Body, bytes) else Body.read()
        return {}

    def get_object(self, *, Bucket: str, Key: str) -> dict[str, Any]:
        return {"Body": io.BytesIO(self.objects[Key])}


class EmptyTable:
    """A DynamoDB client on a table where nothing exists yet: every lookup finds nothing and every write
    succeeds. Counts the calls, so that the benchmark can tell the writer did its work."""

    def __init__(self) -> None:
        self.calls: Counter[str] = Counter()

    def batch_get_item(self, *, RequestItems: dict[str, Any]) -> dict[str, Any]:
        self.calls["BatchGetItem"] += 1
        return {"Responses": {}, "UnprocessedKeys": {}}

    def query(self, **_: Any) -> dict[str, Any]:
        self.calls["Query"] += 1
        return {"Items": []}

    def transact_write_items(self, *, TransactItems: list[dict[str, Any]]) -> dict[str, Any]:
        self.calls["TransactWriteItems"] += 1
        return {}

    def batch_write_item(self, *, RequestItems: dict[str, Any]) -> dict[str, Any]:
        self.calls["BatchWriteItem"] += 1
        return {"UnprocessedItems": {}}


@dataclass
class Setup:
    path: str
    rows: int
    imp: Any  # Import
    layout: Any  # files.Layout
    files: Any  # ImportFiles on MemoryS3
    s3: MemoryS3
    table: EmptyTable
    writer: Any  # ContactChunkWriter on EmptyTable
    worker: Any  # ImportWorker on stubs, for the cross-check


def prepare(path: str, rows: int) -> Setup:
    from audience.compliance.repository import DoNotContactRepository
    from audience.contacts.repository import ContactsRepository
    from audience.imports import files, models
    from audience.imports.mapping import check_mapping
    from audience.imports.models import Import, Run
    from audience.imports.repository import ImportsRepository
    from audience.imports.storage import ImportFiles, upload_key
    from audience.imports.worker import ImportWorker
    from audience.imports.writer import ContactChunkWriter
    from benchmarks import importdata

    table = EmptyTable()

    class Contacts(ContactsRepository):
        @property
        def _client(self) -> Any:
            return table

    class Dnc(DoNotContactRepository):
        @property
        def _client(self) -> Any:
            return table

    class OrgContext:
        def org_context(self, org_id: str) -> tuple[dict[str, Any], str]:
            return {}, "ID"  # field definitions are only read for updates

    class Imports(ImportsRepository):
        """The import record in memory (the split reads it and records its counts)."""

        current: Import

        @property
        def _client(self) -> Any:
            return table

        def get(self, org_id: str, import_id: str) -> Import:
            return self.current

        def replace(self, imp: Import, *, expected_version: int) -> Import:
            self.current = imp
            return imp

    layout = files.detect(path, "contacts.csv")
    head = next(files.read_rows(path, layout))
    checked = check_mapping(
        importdata.mapping(),
        kind="contacts",
        width=len(head),
        custom_fields=importdata.FIELD_TYPES,
        default_country="ID",
    )
    mapping = replace(checked, import_tag=f"Import {STARTED_AT[:16].replace('T', ' ')}")  # as set_mapping adds
    imp = Import(
        id=IMPORT_ID,
        org_id=ORG_ID,
        kind="contacts",
        status=models.IMPORTING,
        file_name="contacts.csv",
        created_at=STARTED_AT,
        expires_at=int(time.time()) + models.RETENTION_SECONDS,
        size=os.path.getsize(path),
        object_key=upload_key(ORG_ID, IMPORT_ID),
        layout=layout.to_dict(),
        has_header=True,
        columns=[{"index": i, "name": name} for i, name in enumerate(head)],
        mapping=mapping,
        run=Run(
            id=RUN_ID,
            kind=models.IMPORT,
            started_at=STARTED_AT,
            consent={"confirmed": True, "at": STARTED_AT, "confirmed_by": "bench@example.com"},
        ),
    )
    s3 = MemoryS3()

    class MemoryFiles(ImportFiles):
        @property
        def _client(self) -> Any:
            return s3

    import_files = MemoryFiles("bench-imports")
    with open(path, "rb") as data:
        s3.put_object(Bucket="bench-imports", Key=imp.object_key, Body=data)
    imports = Imports(TABLE)
    imports.current = imp
    writer = ContactChunkWriter(
        Contacts(TABLE),
        OrgContext(),  # type: ignore[arg-type]
        imports,
        Dnc(TABLE),
        segment_writer=lambda *_: None,
        segment_loader=lambda *_: None,  # type: ignore[arg-type,return-value]
    )
    worker = ImportWorker(
        imports, import_files, writers=lambda kind: writer, field_types=lambda org: dict(importdata.FIELD_TYPES)
    )
    return Setup(path, rows, imp, layout, import_files, s3, table, writer, worker)


# -- the two measured passes ----------------------------------------------------------------------


def baseline(path: str) -> tuple[int, int]:
    """csv.reader over the file, phonenumbers parse + format of each phone, email-validator on each
    email. Returns (CPU ns, rows)."""
    import phonenumbers
    from email_validator import EmailNotValidError, validate_email

    e164 = phonenumbers.PhoneNumberFormat.E164
    started = time.process_time_ns()
    rows = 0
    with open(path, encoding="utf-8", newline="") as file:
        reader = csv.reader(file)
        next(reader)
        for row in reader:
            rows += 1
            phone, email = row[3], row[2]
            if phone.strip():
                with contextlib.suppress(phonenumbers.NumberParseException):
                    phonenumbers.format_number(phonenumbers.parse(phone, "ID"), e164)
            if email.strip():
                with contextlib.suppress(EmailNotValidError):
                    validate_email(email, check_deliverability=False)
    return time.process_time_ns() - started, rows


def pipeline(setup: Setup) -> tuple[dict[str, int], dict[str, Any]]:
    """The production pipeline in stages; returns (CPU ns by stage, what it produced)."""
    from audience.imports import files, models
    from audience.imports.rows import DUPLICATE_ROW, IdentitySet, Rejection, RowMapper
    from audience.imports.storage import chunk_key
    from audience.imports.worker import CHUNK_ROWS, _brief, _ErrorPart, _numbered, _sample
    from benchmarks import importdata

    imp, writer = setup.imp, setup.writer
    names = [c["name"] for c in imp.columns]
    ns: dict[str, int] = {}
    counts: Counter[str] = Counter()
    samples: dict[str, list[dict[str, Any]]] = {}

    # read + map, as the split's loop does it
    started = time.process_time_ns()
    mapper = RowMapper(
        imp.kind,
        imp.mapping,
        names=names,
        field_types=dict(importdata.FIELD_TYPES),
        extra_tags=[*imp.mapping.tags, *([imp.mapping.import_tag] if imp.mapping.import_tag else [])],
    )
    mapped_rows: list[tuple[int, dict[str, Any], list[str], list[str]]] = []
    with _ErrorPart(len(names)) as errors:
        for number, cells in _numbered(files.read_rows(setup.path, setup.layout), imp.skip_rows, imp.has_header):
            mapped = mapper.map(cells)
            if isinstance(mapped, Rejection):
                counts[models.INVALID] += 1
                errors.write(number, mapped.reason, mapped.message, cells)
                _sample(samples, models.INVALID, {"row": number, "reason": mapped.reason, "message": mapped.message})
                continue
            mapped_rows.append((number, mapped[0], mapped[1], cells))
    ns["read_map"] = time.process_time_ns() - started

    # dedupe
    started = time.process_time_ns()
    seen = IdentitySet()
    kept: list[dict[str, Any]] = []
    with _ErrorPart(len(names)) as errors:
        for number, record, identities, cells in mapped_rows:
            if any(key in seen for key in identities):
                counts[models.DUPLICATE] += 1
                message = "repeats the phone or email of an earlier row"
                errors.write(number, DUPLICATE_ROW, message, cells)
                _sample(samples, models.DUPLICATE, {"row": number, "message": message, **_brief(record)})
                continue
            for key in identities:
                seen.add(key)
            kept.append({"r": number, "d": record, "c": cells})
    ns["dedupe"] = time.process_time_ns() - started
    del mapped_rows

    # chunk files: written by the split, read back by the chunk workers
    started = time.process_time_ns()
    chunks: list[list[dict[str, Any]]] = []
    for number, start in enumerate(range(0, len(kept), CHUNK_ROWS)):
        key = chunk_key(imp.org_id, imp.id, imp.run.id, number)
        setup.files.put_chunk(key, kept[start : start + CHUNK_ROWS])
        chunks.append(setup.files.chunk(key))
    ns["chunk_json"] = time.process_time_ns() - started
    bodies = {k: v for k, v in setup.s3.objects.items() if "/chunks/" in k}
    del kept

    # chunk writer; its classification timed apart
    planned = [0]
    plan = type(writer)._plan

    def timed_plan(*args: Any, **kwargs: Any) -> Any:
        begun = time.process_time_ns()
        try:
            return plan(writer, *args, **kwargs)
        finally:
            planned[0] += time.process_time_ns() - begun

    writer._plan = timed_plan
    outcomes: Counter[str] = Counter()
    requests: Counter[str] = Counter()
    started = time.process_time_ns()
    try:
        for number, records in enumerate(chunks):
            result = writer.run(imp, imp.run, number, records)
            outcomes.update(result.counts)
            requests.update(result.requests)
    finally:
        del writer._plan
    total = time.process_time_ns() - started
    ns["classify"] = planned[0]
    ns["build_writes"] = total - planned[0]
    produced = {"counts": {**counts, **outcomes}, "requests": dict(requests), "chunks": chunks, "bodies": bodies}
    return ns, produced


def split(setup: Setup) -> tuple[int, dict[str, bytes], dict[str, int]]:
    """`ImportWorker.split` itself over the file: (CPU ns, chunk bodies, the counts it recorded)."""
    setup.s3.objects = {k: v for k, v in setup.s3.objects.items() if "/chunks/" not in k}
    setup.worker._imports.current = setup.imp
    started = time.process_time_ns()
    setup.worker.split(setup.imp.org_id, setup.imp.id, setup.imp.run.id)
    elapsed = time.process_time_ns() - started
    bodies = {k: v for k, v in setup.s3.objects.items() if "/chunks/" in k}
    return elapsed, bodies, dict(setup.worker._imports.current.run.counts)


def diagnose(setup: Setup, chunks: list[list[dict[str, Any]]], rows: int) -> dict[str, Any]:
    """Two costs inside the chunk writer, measured apart: `serialize` (boto3's TypeSerializer behind
    audience.contacts.repository.serialize) over every item and key the writer serializes, captured from
    one run of it; and `national_digits`, which parses each new contact's phone again for its search items."""
    import importlib

    from audience.contacts import repository
    from audience.contacts.normalize import national_digits

    modules = [
        importlib.import_module(name)
        for name in (
            "audience.contacts.repository",
            "audience.imports.repository",
            "audience.imports.writer",
            "audience.compliance.repository",
        )
    ]
    original = repository.serialize
    captured: list[dict[str, Any]] = []

    def capture(item: dict[str, Any]) -> dict[str, Any]:
        captured.append(item)
        return original(item)

    for module in modules:
        module.serialize = capture  # type: ignore[attr-defined]
    try:
        for number, records in enumerate(chunks):
            setup.writer.run(setup.imp, setup.imp.run, number, records)
    finally:
        for module in modules:
            module.serialize = original  # type: ignore[attr-defined]
    phones = [r["d"]["phone"] for records in chunks for r in records if r["d"].get("phone")]
    serialize_ns, digits_ns = [], []
    for _ in range(3):
        started = time.process_time_ns()
        for item in captured:
            original(item)
        serialize_ns.append(time.process_time_ns() - started)
        started = time.process_time_ns()
        for phone in phones:
            national_digits(phone)
        digits_ns.append(time.process_time_ns() - started)
    return {
        "serialize_us_per_row": round(statistics.median(serialize_ns) / rows / 1000, 1),
        "serialize_calls_per_row": round(len(captured) / rows, 1),
        "serialized_attributes_per_row": round(sum(len(i) for i in captured) / rows, 1),
        "national_digits_us_per_row": round(statistics.median(digits_ns) / rows / 1000, 1),
    }


# -- the benchmark --------------------------------------------------------------------------------


def measure(args: argparse.Namespace, directory: str) -> dict[str, Any]:
    from benchmarks import importdata

    path = str(importdata.write_csv(Path(directory) / "contacts.csv", args.rows))
    setup = prepare(path, args.rows)
    samples: dict[str, list[float]] = {"baseline": [], "pipeline": [], "split": [], **{s: [] for s in STAGES}}
    produced: dict[str, Any] = {}
    for round_ in range(args.rounds + 1):
        base_ns, rows = baseline(path)
        stage_ns, produced = pipeline(setup)
        split_ns, split_bodies, split_counts = split(setup)
        if round_ == 0:
            if split_bodies != produced["bodies"]:
                raise RuntimeError("the staged pipeline wrote other chunks than ImportWorker.split")
            if {k: v for k, v in produced["counts"].items() if k in ("invalid", "duplicate")} != split_counts:
                raise RuntimeError(f"counts differ from the split's: {produced['counts']} vs {split_counts}")
            if (
                rows != args.rows
                or sum(produced["counts"].get(k, 0) for k in ("created", "invalid", "duplicate")) != rows
            ):
                raise RuntimeError(f"rows unaccounted for: {produced['counts']}")
            continue
        samples["baseline"].append(base_ns / rows / 1000)
        for stage in STAGES:
            samples[stage].append(stage_ns[stage] / rows / 1000)
        samples["pipeline"].append(sum(stage_ns.values()) / rows / 1000)
        samples["split"].append(split_ns / rows / 1000)

    if args.profile:
        profiler = cProfile.Profile()
        profiler.enable()
        pipeline(setup)
        profiler.disable()
        print("Top functions of one pipeline pass (cProfile, own time):\n")
        pstats.Stats(profiler).sort_stats("tottime").print_stats(25)

    diagnostics = diagnose(setup, produced["chunks"], args.rows)
    medians = {name: statistics.median(values) for name, values in samples.items()}
    ratios = [p / b for p, b in zip(samples["pipeline"], samples["baseline"], strict=True)]
    ratio = medians["pipeline"] / medians["baseline"]
    return {
        "rows": args.rows,
        "file_bytes": os.path.getsize(path),
        "rounds": args.rounds,
        "medians_us_per_row": {k: round(v, 2) for k, v in medians.items()},
        "min_us_per_row": {k: round(min(v), 2) for k, v in samples.items()},
        "max_us_per_row": {k: round(max(v), 2) for k, v in samples.items()},
        "ratio": round(ratio, 2),
        "ratio_per_round": [round(r, 2) for r in ratios],
        "counts": produced["counts"],
        "chunks": len(produced["chunks"]),
        "diagnostics": diagnostics,
        "write_requests": produced["requests"],
        "goal_ratio": GOAL_RATIO,
        "result": "PASS" if ratio <= GOAL_RATIO else "OVER",
        "samples_us_per_row": {k: [round(x, 2) for x in v] for k, v in samples.items()},
    }


def run(args: argparse.Namespace) -> bool:
    if str(ROOT) not in sys.path:
        sys.path.insert(0, str(ROOT))
    from benchmarks import importdata

    code = importdata.code_version()  # the code this run loads, before it runs

    saved = os.environ.get("IMPORT_TMP_DIR")
    with tempfile.TemporaryDirectory(prefix="bench-import-") as directory:
        os.environ["IMPORT_TMP_DIR"] = directory  # the split's download and error parts
        try:
            found = measure(args, directory)
        finally:
            if saved is None:
                del os.environ["IMPORT_TMP_DIR"]
            else:
                os.environ["IMPORT_TMP_DIR"] = saved

    med, low, high = found["medians_us_per_row"], found["min_us_per_row"], found["max_us_per_row"]
    base = med["baseline"]
    print(f"{found['rows']:,} rows ({found['file_bytes'] / 1e6:.1f} MB), {found['rounds']} rounds, CPU µs per row:\n")
    print("| Part | Median µs/row | Min-max µs/row | Share of pipeline | Ratio to baseline |")
    print("|---|---:|---:|---:|---:|")
    print(
        f"| baseline: csv + phonenumbers + email-validator | {base:.1f} "
        f"| {low['baseline']:.1f}-{high['baseline']:.1f} | — | 1.00x |"
    )
    for stage in STAGES:
        print(
            f"| {STAGE_NAMES[stage]} | {med[stage]:.1f} | {low[stage]:.1f}-{high[stage]:.1f} "
            f"| {med[stage] / med['pipeline']:.0%} | {med[stage] / base:.2f}x |"
        )
    print(
        f"| **pipeline** | **{med['pipeline']:.1f}** | {low['pipeline']:.1f}-{high['pipeline']:.1f} | 100% "
        f"| **{found['ratio']:.2f}x** |"
    )
    print(
        f"| (check) ImportWorker.split itself | {med['split']:.1f} | {low['split']:.1f}-{high['split']:.1f} | — "
        f"| {med['split'] / base:.2f}x |"
    )
    per_round = ", ".join(f"{r:.2f}" for r in found["ratio_per_round"])
    print(
        f"\nratio pipeline / baseline: {found['ratio']:.2f}x (per round {per_round}); "
        f"goal ≤ {GOAL_RATIO}x: {'met' if found['result'] == 'PASS' else 'missed'}"
    )
    print(f"outcomes: {found['counts']}; chunk write requests: {found['write_requests']}")
    diag = found["diagnostics"]
    print(
        f"inside the chunk writer: serialize {diag['serialize_us_per_row']:.1f} µs/row "
        f"({diag['serialize_calls_per_row']:.1f} items and keys, "
        f"{diag['serialized_attributes_per_row']:.0f} attributes per row); national_digits (the phone parsed again "
        f"for search items) {diag['national_digits_us_per_row']:.1f} µs/row"
    )

    importdata.write_results(args.output, "import_pipeline", found, code=code)
    return found["result"] == "PASS"
