"""Import end to end: a contact file imported through the state machine on the local stack, timed by phase.

The local stack runs the whole application on moto in-process (devstack.testing.local_stack), Step
Functions included: the import state machine (statemachines/imports.asl.yaml) invokes ImportFunction's
handler for each task, chunks eight at a time. An org with the file's custom fields imports a generated
file (benchmarks/importdata.py: names in several scripts, mixed phone formats, about 5% invalid rows and
1% in-file duplicates) the way a client does: ImportService.create, the file put to the import's key (as
the presigned upload would), analyse, the default mapping with the custom fields, start with consent;
then the benchmark waits until the import is completed and its execution has ended.

Each task's wall time is taken around the ImportWorker method the handler calls (analyse, split, each
chunk, finish); the chunk phase runs from the first chunk's start to the last chunk's end. Between tasks
is Step Functions' own time. The run's total is from `start` until the import reads `completed`, and the
CPU time of the process over the same span is shown beside it (moto, Step Functions and the functions
share the process and its GIL, so wall time is bounded by one core).

What this does not include: the stream consumers that follow every contact write (counters, segment
membership, search) do not run during the measurement. Draining them (`--drain`) is measured apart,
after the import: moto evaluates every DynamoDB Query by walking and sorting the table, so downstream
work grows with the table's size and takes far longer than the import on the emulator.

Absolute figures are moto's, not DynamoDB's: moto runs each DynamoDB request under one lock and in
Python, so the local figure is an upper bound set by the emulator, useful to compare runs of this
benchmark on one machine. The full run is `--rows 100000`; the default is 20,000 rows so that the
benchmark stays within a few minutes.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import threading
import time
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT / "layers" / "audience") not in sys.path:
    sys.path.insert(0, str(ROOT / "layers" / "audience"))  # the layer, as Lambda puts it on the path
RESULTS = ROOT / "benchmarks" / "results"
TEMPLATE = ROOT / "template.yaml"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--rows", type=int, default=20_000, help="data rows in the file (default 20000; full run 100000)"
    )
    parser.add_argument("--timeout", type=float, default=4 * 3600, help="seconds to wait for the import (default 4 h)")
    parser.add_argument("--drain", action="store_true", help="afterwards, also time the stream consumers catching up")
    parser.add_argument("--output", type=Path, default=RESULTS / "import_e2e.json")


class TaskClock:
    """Wall-clock spans of ImportWorker's task methods, however the state machine calls them."""

    METHODS = ("analyse", "split", "chunk", "finish")

    def __init__(self) -> None:
        self.spans: dict[str, list[tuple[float, float]]] = {m: [] for m in self.METHODS}
        self._lock = threading.Lock()
        self._originals: dict[str, Callable[..., Any]] = {}

    def install(self) -> None:
        from audience.imports.worker import ImportWorker

        for name in self.METHODS:
            original = getattr(ImportWorker, name)
            self._originals[name] = original
            setattr(ImportWorker, name, self._timed(name, original))

    def uninstall(self) -> None:
        from audience.imports.worker import ImportWorker

        for name, original in self._originals.items():
            setattr(ImportWorker, name, original)

    def _timed(self, name: str, original: Callable[..., Any]) -> Callable[..., Any]:
        def timed(*args: Any, **kwargs: Any) -> Any:
            begun = time.perf_counter()
            try:
                return original(*args, **kwargs)
            finally:
                with self._lock:
                    self.spans[name].append((begun, time.perf_counter()))

        return timed


def _wait(get: Callable[[], Any], done: Callable[[Any], bool], timeout: float, what: str) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        current = get()
        if done(current):
            return current
        if time.monotonic() > deadline:
            raise TimeoutError(f"{what}: still not done after {timeout:.0f} s")
        time.sleep(0.25)


def measure(args: argparse.Namespace, path: Path) -> dict[str, Any]:
    from audience import admin, container
    from audience.imports import models
    from benchmarks import importdata
    from devstack.testing import local_stack

    clock = TaskClock()
    with local_stack(str(TEMPLATE), parameters={"Stage": "bench"}) as stack:
        container.reset()
        # The functions' JSON logs and metrics would flood the report; local_stack restores the environment.
        os.environ.update(POWERTOOLS_LOG_LEVEL="WARNING", POWERTOOLS_METRICS_DISABLED="true")
        warnings.filterwarnings("ignore", message="No application metrics to publish")
        clock.install()
        try:
            org_id = admin.create_org("Bench", default_country="ID")["org_id"]
            for field, type_ in importdata.FIELD_TYPES.items():
                container.org_service().create_field(org_id, field, type_)
            service = container.import_service()
            imports = service._imports

            def current() -> Any:
                return imports.get(org_id, imp.id)

            def executions_ended(_: Any) -> bool:
                return not stack._running_executions()

            began = time.perf_counter()
            imp, _ = service.create(org_id, file_name=path.name, size=path.stat().st_size)
            with path.open("rb") as data:
                stack.client("s3").put_object(Bucket=service._files.bucket, Key=imp.object_key, Body=data)
            uploaded = time.perf_counter()
            service.analyse(org_id, imp.id, {})
            _wait(current, lambda i: i.status not in models.RUNNING, args.timeout, "analysis")
            analysed = time.perf_counter()
            if current().status != models.ANALYSED:
                raise RuntimeError(f"the analysis ended {current().status}: {current().error}")
            _wait(current, executions_ended, 60, "analysis execution")

            service.set_mapping(org_id, imp.id, importdata.mapping())
            cpu = time.process_time()
            started = time.perf_counter()
            service.start(org_id, imp.id, consent_confirmed=True, confirmed_by="bench@example.com")
            final = _wait(current, lambda i: i.status not in models.RUNNING, args.timeout, "import")
            completed = time.perf_counter()
            cpu = time.process_time() - cpu
            _wait(current, executions_ended, 300, "import execution")
            if final.status != models.COMPLETED:
                raise RuntimeError(f"the import ended {final.status}: {final.error}")
            drained = None
            if args.drain:
                begun = time.perf_counter()
                stack.drain(timeout=args.timeout)
                drained = time.perf_counter() - begun
        finally:
            clock.uninstall()
        container.reset()

    spans = clock.spans
    (split_start, split_end) = spans["split"][-1]
    chunk_start = min(s for s, _ in spans["chunk"])
    chunk_end = max(e for _, e in spans["chunk"])
    (finish_start, finish_end) = spans["finish"][-1]
    run = final.run
    assert run is not None
    total = completed - started
    return {
        "rows": args.rows,
        "file_bytes": path.stat().st_size,
        "counts": {k: v for k, v in run.counts.items() if v},
        "chunks": run.chunks,
        "upload_seconds": round(uploaded - began, 2),
        "analyse_seconds": round(analysed - uploaded, 2),
        "analyse_task_seconds": round(sum(e - s for s, e in spans["analyse"]), 2),
        "phases_seconds": {
            "start -> split": round(split_start - started, 2),
            "split": round(split_end - split_start, 2),
            "split -> first chunk": round(chunk_start - split_end, 2),
            "chunks": round(chunk_end - chunk_start, 2),
            "last chunk -> finish": round(finish_start - chunk_end, 2),
            "finish": round(finish_end - finish_start, 2),
            "finish -> completed seen": round(completed - finish_end, 2),
        },
        "chunk_task_seconds": sorted(round(e - s, 1) for s, e in spans["chunk"]),
        "chunk_tasks_run": len(spans["chunk"]),
        "run_seconds": round(total, 1),
        "run_cpu_seconds": round(cpu, 1),
        "rows_per_second": round(args.rows / total, 1),
        "split_rows_per_second": round(args.rows / (split_end - split_start)),
        "chunk_rows_per_second": round(
            sum(run.counts.get(k, 0) for k in ("created", "updated", "unchanged")) / (chunk_end - chunk_start), 1
        ),
        "recorded_started_at": run.started_at,
        "recorded_finished_at": run.finished_at,
        "drain_seconds": round(drained, 1) if drained is not None else None,
    }


def run(args: argparse.Namespace) -> bool:
    if str(ROOT) not in sys.path:
        sys.path.insert(0, str(ROOT))
    from benchmarks import importdata

    code = importdata.code_version()  # the code this run loads, before it runs

    with tempfile.TemporaryDirectory(prefix="bench-import-e2e-") as directory:
        path = importdata.write_csv(Path(directory) / "contacts.csv", args.rows)
        found = measure(args, path)

    phases = found["phases_seconds"]
    print(f"{found['rows']:,} rows ({found['file_bytes'] / 1e6:.1f} MB), {found['chunks']} chunks: {found['counts']}\n")
    print("| Phase | Wall s | Share of the run |")
    print("|---|---:|---:|")
    for name, seconds in phases.items():
        print(f"| {name} | {seconds:.1f} | {seconds / found['run_seconds']:.0%} |")
    print(f"| **run (start -> completed)** | **{found['run_seconds']:.1f}** | 100% |")
    print(
        f"\nrun: {found['rows_per_second']:.0f} rows/s wall ({found['run_cpu_seconds']:.0f} s CPU in the process); "
        f"split {found['split_rows_per_second']:,} rows/s; "
        f"chunks {found['chunk_rows_per_second']:.0f} contacts written/s"
    )
    print(
        f"before the run: upload {found['upload_seconds']:.1f} s, analysis {found['analyse_seconds']:.1f} s "
        f"(its task {found['analyse_task_seconds']:.1f} s)"
    )
    print(f"chunk tasks (s): {found['chunk_task_seconds']}")
    if found["drain_seconds"] is not None:
        print(f"stream consumers caught up in {found['drain_seconds']:.0f} s after the import")

    importdata.write_results(args.output, "import_e2e", found, code=code)
    return True
