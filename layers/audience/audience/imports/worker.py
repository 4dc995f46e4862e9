"""The import state machine's tasks: analyse the upload, split a run into chunks, write a chunk, finish.

Each task reads the import, checks that it is still in the status the task expects (a cancelled import
or a superseded run makes the task a no-op) and writes its result with a conditional update.
"""

from __future__ import annotations

import contextlib
import csv
import io
import os
import tempfile
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import replace
from itertools import islice
from typing import Any, Protocol

from audience import clock
from audience.errors import ConflictError
from audience.exports.csvfile import neutralise, restore
from audience.imports import files, models
from audience.imports.mapping import column_names, looks_like_header, suggest
from audience.imports.models import Import, Run
from audience.imports.repository import ImportsRepository, ledger_counts
from audience.imports.rows import DUPLICATE_ROW, IdentitySet, Rejection, RowMapper
from audience.imports.storage import ImportFiles, chunk_key, errors_part_key, report_key, run_prefix
from audience.imports.writer import ChunkResult

CHUNK_ROWS = 5_000
MAX_ROWS = 1_048_576  # data rows in one file (a spreadsheet's sheet limit, and what CRMs accept)
SAMPLE_ROWS = 20  # rows the analysis reads after the header
SAMPLE_VALUES = 5
REPORT_SAMPLES = 10


class ChunkWriter(Protocol):
    def run(
        self,
        imp: Import,
        run: Run,
        number: int,
        records: list[dict[str, Any]],
        *,
        should_stop: Callable[[], bool] = ...,
    ) -> ChunkResult: ...


class ImportWorker:
    def __init__(
        self,
        imports: ImportsRepository,
        files_: ImportFiles,
        *,
        writers: Callable[[str], ChunkWriter],
        field_types: Callable[[str], dict[str, str]],
    ) -> None:
        self._imports = imports
        self._files = files_
        self._writers = writers
        self._field_types = field_types

    # -- analyse ------------------------------------------------------------------------------------

    def analyse(self, org_id: str, import_id: str) -> dict[str, Any]:
        imp = self._imports.get(org_id, import_id)
        if imp.status != models.ANALYSING:
            return {"status": imp.status}
        try:
            found = self._analysis(imp)
        except files.FileProblem as problem:
            self._change(org_id, import_id, models.ANALYSING, status=models.FAILED, error=problem.message)
            return {"status": models.FAILED, "error": problem.code}
        self._change(org_id, import_id, models.ANALYSING, status=models.ANALYSED, error=None, **found)
        return {"status": models.ANALYSED}

    def _analysis(self, imp: Import) -> dict[str, Any]:
        size = self._files.size(imp.object_key)
        if size is None:
            raise files.FileProblem("empty", "no file was uploaded for this import")
        if size > files.MAX_FILE_BYTES:
            raise files.FileProblem("too_large", f"the file is {size} bytes; at most {files.MAX_FILE_BYTES}")
        options = imp.options
        with self._files.downloaded(imp.object_key) as path:
            layout = files.detect(
                path, imp.file_name, encoding=options.get("encoding"), delimiter=options.get("delimiter")
            )
            head = _head(files.read_rows(path, layout), imp.skip_rows, SAMPLE_ROWS + 1)
        if not head:
            raise files.FileProblem(
                "empty", "the file has no rows" + (" after the rows skipped" if imp.skip_rows else "")
            )
        has_header = options.get("has_header")
        if has_header is None:
            has_header = looks_like_header(head[0], head[1:])
        data = head[1:] if has_header else head
        if not data:
            raise files.FileProblem("header_only", "the file has a header row but no data rows")
        # The header's width, or the rows' most common one when wider (a title row taken for the header):
        # one long row among those read is a row to reject, not another column.
        common = Counter(len(row) for row in data).most_common(1)[0][0]
        width = max(len(head[0]), common) if has_header else common
        names = column_names(head[0] if has_header else None, width)
        custom = list(self._field_types(imp.org_id))
        columns = []
        for index, name in enumerate(names):
            samples = [row[index].strip() for row in data if index < len(row) and row[index].strip()][:SAMPLE_VALUES]
            samples = [restore(s)[:200] for s in samples]
            columns.append(
                {"index": index, "name": name, "samples": samples, **suggest(name, samples, imp.kind, custom)}
            )
        return {"layout": layout.to_dict(), "has_header": bool(has_header), "columns": columns, "size": size}

    # -- split --------------------------------------------------------------------------------------

    def split(self, org_id: str, import_id: str, run_id: str) -> dict[str, Any]:
        """Read the whole file once: validate and normalise every row, drop the file's own duplicates,
        write the valid rows in chunks of CHUNK_ROWS and the rejected ones to the run's error report."""
        imp = self._imports.get(org_id, import_id)
        run = imp.run
        if run is None or run.id != run_id or imp.status not in (models.VALIDATING, models.IMPORTING):
            return {"chunks": []}
        if run.chunks is not None:  # split before (a retried task): the chunks are in S3 already
            return {"chunks": [{"chunk": n} for n in range(run.chunks)]}
        assert imp.mapping is not None
        assert imp.layout is not None
        layout = files.Layout.from_dict(imp.layout)
        names = [c["name"] for c in imp.columns]
        mapper = RowMapper(
            imp.kind,
            imp.mapping,
            names=names,
            field_types=self._field_types(org_id),
            extra_tags=[*imp.mapping.tags, *([imp.mapping.import_tag] if imp.mapping.import_tag else [])],
        )
        seen = IdentitySet()
        counts: Counter[str] = Counter()
        samples: dict[str, list[dict[str, Any]]] = {}
        chunk: list[dict[str, Any]] = []
        chunks = 0
        rows = 0
        with self._files.downloaded(imp.object_key) as path, _ErrorPart(len(names)) as errors:
            for number, cells in _numbered(files.read_rows(path, layout), imp.skip_rows, imp.has_header):
                rows += 1
                if rows > MAX_ROWS:
                    raise files.FileProblem("too_many_rows", f"the file has more than {MAX_ROWS} data rows")
                mapped = mapper.map(cells)
                if isinstance(mapped, Rejection):
                    counts[models.INVALID] += 1
                    errors.write(number, mapped.reason, mapped.message, cells)
                    _sample(
                        samples, models.INVALID, {"row": number, "reason": mapped.reason, "message": mapped.message}
                    )
                    continue
                record, identities = mapped
                if any(key in seen for key in identities):
                    counts[models.DUPLICATE] += 1
                    message = "repeats the phone or email of an earlier row"
                    errors.write(number, DUPLICATE_ROW, message, cells)
                    _sample(samples, models.DUPLICATE, {"row": number, "message": message, **_brief(record)})
                    continue
                for key in identities:
                    seen.add(key)
                chunk.append({"r": number, "d": record, "c": cells})
                if len(chunk) == CHUNK_ROWS:
                    self._files.put_chunk(chunk_key(org_id, import_id, run_id, chunks), chunk)
                    chunks += 1
                    chunk = []
            if chunk:
                self._files.put_chunk(chunk_key(org_id, import_id, run_id, chunks), chunk)
                chunks += 1
            if errors.rows:
                errors.upload(self._files, errors_part_key(org_id, import_id, run_id, "split"))

        def record_split(current: Import) -> Import:
            assert current.run is not None
            split_run = replace(current.run, rows=rows, chunks=chunks, counts=dict(counts), samples=samples)
            return replace(current, run=split_run)

        self._mutate(org_id, import_id, record_split, run_id=run_id)
        return {"chunks": [{"chunk": n} for n in range(chunks)]}

    # -- chunks -------------------------------------------------------------------------------------

    def chunk(self, org_id: str, import_id: str, run_id: str, number: int) -> dict[str, Any]:
        imp = self._imports.get(org_id, import_id)
        run = imp.run
        if run is None or run.id != run_id:
            return {"done": True}
        if self._imports.ledger(org_id, import_id, run_id, number).get("folded"):
            return {"done": True}  # finished before (a retried task)
        records = self._files.chunk(chunk_key(org_id, import_id, run_id, number))

        def should_stop() -> bool:
            current = self._imports.get(org_id, import_id)
            return current.status == models.CANCELLING or current.run is None or current.run.id != run_id

        result = self._writers(imp.kind).run(imp, run, number, records, should_stop=should_stop)
        if result.rejected:
            part = _ErrorPart(len(imp.columns))
            with part:
                for row, reason, message, cells in result.rejected:
                    part.write(row, reason, message, cells)
                part.upload(self._files, errors_part_key(org_id, import_id, run_id, f"{number:05d}"))
        self._imports.put_samples(org_id, import_id, run_id, number, result.samples, expires_at=imp.expires_at)
        counts = {k: v for k, v in result.counts.items() if k not in result.ledgered}
        self._imports.close_ledger(
            org_id, import_id, run_id, number, counts=counts, fold=run.kind == models.IMPORT, expires_at=imp.expires_at
        )
        return {"done": True, "stopped": result.stopped, "requests": dict(result.requests)}

    # -- finish -------------------------------------------------------------------------------------

    def finish(self, org_id: str, import_id: str, run_id: str, *, error: str | None = None) -> dict[str, Any]:
        """Close every ledger (a chunk that failed for good still folds what it wrote), total the outcomes,
        assemble the error report and set the final status."""
        imp = self._imports.get(org_id, import_id)
        run = imp.run
        if (
            run is None
            or run.id != run_id
            or imp.status not in (models.VALIDATING, models.IMPORTING, models.CANCELLING)
        ):
            if run is not None and run.id == run_id and imp.status == models.COMPLETED and imp.object_key:
                # Finished before, and the upload's deletion failed after that (a retry of this step comes
                # here): it goes now (deleting a prefix already gone is a no-op).
                self._files.delete_prefix(imp.object_key)
            return {"status": imp.status}
        ledgers = self._imports.ledgers(org_id, import_id, run_id)
        for ledger in ledgers:
            if not ledger.get("folded"):
                number = int(ledger["sk"].rsplit("#", 1)[1])
                self._imports.close_ledger(
                    org_id,
                    import_id,
                    run_id,
                    number,
                    counts={},
                    fold=run.kind == models.IMPORT,
                    expires_at=imp.expires_at,
                )
        totals = Counter(run.counts)
        for ledger in self._imports.ledgers(org_id, import_id, run_id):
            totals.update(ledger_counts(ledger))
        samples = {k: list(v) for k, v in run.samples.items()}
        for item in self._imports.ledgers(org_id, import_id, run_id, prefix="S#"):
            for outcome, found in (item.get("samples") or {}).items():
                samples.setdefault(outcome, []).extend(found)
        samples = {k: sorted(v, key=lambda s: int(s["row"]))[:REPORT_SAMPLES] for k, v in samples.items()}
        prefix = run_prefix(org_id, import_id, run_id)
        parts = self._files.part_keys(f"{prefix}/errors/")
        report = None
        if parts:
            report = report_key(org_id, import_id, run_id)
            header = _ErrorPart.header([c["name"] for c in imp.columns])
            self._files.concatenate(report, header, parts, filename=f"{_stem(imp.file_name)}-errors.csv")
        self._files.delete_prefix(f"{prefix}/chunks/")
        self._files.delete_prefix(f"{prefix}/errors/")

        def finished(current: Import) -> Import:
            assert current.run is not None
            done = replace(
                current.run, finished_at=clock.now_iso(), counts=dict(totals), samples=samples, error_report=report
            )
            if current.run.kind == models.DRY_RUN:
                status = models.VALIDATED if error is None and current.status != models.CANCELLING else models.ANALYSED
                return replace(
                    current, status=status, run=done, dry_run=done if status == models.VALIDATED else None, error=error
                )
            if error is not None:
                return replace(current, status=models.FAILED, run=done, error=error)
            status = models.CANCELLED if current.status == models.CANCELLING else models.COMPLETED
            return replace(current, status=status, run=done, error=None)

        final = self._mutate(org_id, import_id, finished, run_id=run_id)
        if final.status == models.COMPLETED and final.object_key:
            # A completed import is never read again: the uploaded file (people's rows) goes now, not when
            # the bucket's lifecycle expires it.
            self._files.delete_prefix(final.object_key)
        return {"status": final.status, "counts": dict(totals)}

    # -- helpers ------------------------------------------------------------------------------------

    def _change(self, org_id: str, import_id: str, expected: str, **changes: Any) -> None:
        def apply(current: Import) -> Import:
            if current.status != expected:
                raise _Superseded
            return replace(current, **changes)

        with contextlib.suppress(_Superseded):
            self._mutate(org_id, import_id, apply)

    def _mutate(
        self, org_id: str, import_id: str, change: Callable[[Import], Import], *, run_id: str | None = None
    ) -> Import:
        for _ in range(5):
            current = self._imports.get(org_id, import_id)
            if run_id is not None and (current.run is None or current.run.id != run_id):
                return current
            updated = replace(change(current), version=current.version + 1)
            try:
                return self._imports.replace(updated, expected_version=current.version)
            except ConflictError:
                continue
        raise ConflictError(f"import {import_id} kept changing; the task will be retried")


class _Superseded(Exception):
    pass


def _head(rows: Iterator[list[str]], skip: int, take: int) -> list[list[str]]:
    found: list[list[str]] = []
    for row in islice(rows, skip, None):
        if any(cell.strip() for cell in row):
            found.append(row)
            if len(found) == take:
                break
    return found


def _numbered(rows: Iterator[list[str]], skip: int, has_header: bool) -> Iterator[tuple[int, list[str]]]:
    """Data rows with their number as a spreadsheet shows it (the file's first row is row 1); blank rows
    are left out, and so is the header (the first non-blank row after those skipped)."""
    header_pending = has_header
    for number, cells in enumerate(rows, start=1):
        if number <= skip or not any(cell.strip() for cell in cells):
            continue
        if header_pending:
            header_pending = False
            continue
        yield number, cells


def _sample(samples: dict[str, list[dict[str, Any]]], outcome: str, sample: dict[str, Any]) -> None:
    found = samples.setdefault(outcome, [])
    if len(found) < REPORT_SAMPLES:
        found.append(sample)


def _brief(record: dict[str, Any]) -> dict[str, Any]:
    keep = ("full_name", "first_name", "last_name", "email", "phone", "identifier")
    return {k: record[k] for k in keep if record.get(k)}


def _stem(file_name: str) -> str:
    stem = os.path.splitext(os.path.basename(file_name))[0]
    return "".join(c for c in stem if c.isalnum() or c in "-_ ")[:60] or "import"


class _ErrorPart:
    """Rejected rows as CSV (row, reason, message, then the row's cells), in a temporary file."""

    def __init__(self, width: int) -> None:
        self._width = width
        self.rows = 0
        handle, self._path = tempfile.mkstemp(prefix="import-errors-", dir=os.environ.get("IMPORT_TMP_DIR"))
        self._file = open(handle, "w", encoding="utf-8", newline="")  # noqa: SIM115 (closed by __exit__)
        self._writer = csv.writer(self._file, dialect="excel", lineterminator="\r\n")

    @staticmethod
    def header(names: list[str]) -> bytes:
        text = io.StringIO()
        csv.writer(text, dialect="excel", lineterminator="\r\n").writerow(
            ["row", "reason", "message", *(neutralise(n) for n in names)]
        )
        return ("\ufeff" + text.getvalue()).encode("utf-8")

    def write(self, row: int, reason: str, message: str, cells: list[str]) -> None:
        self._writer.writerow([str(row), reason, neutralise(message), *(neutralise(c) for c in cells)])
        self.rows += 1

    def upload(self, files_: ImportFiles, key: str) -> None:
        self._file.flush()
        with open(self._path, "rb") as data:
            files_.put(key, data)

    def __enter__(self) -> _ErrorPart:
        return self

    def __exit__(self, *_: Any) -> None:
        self._file.close()
        os.unlink(self._path)
