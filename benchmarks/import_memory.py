"""Import split memory: peak RSS of a worker splitting a 200 MB CSV (about a million rows), and its rows/s.

The split reads the whole upload once, streaming: the file is downloaded to local disk, rows are read one
at a time, valid rows are collected in chunks of 5,000 and written to S3, rejected rows go to a file on
disk, and the identities seen so far are kept as 8-byte digests (`IdentitySet`). So its memory should
not grow with the file, except for the digests. This benchmark generates a CSV of `--rows` rows (default
1,000,000 of about 200 bytes: names in several scripts, email, phone, city, company and a free-text note,
see benchmarks/importdata.py) in a temporary directory, prepares an import the way the API and the state
machine do (ImportService.create, the file put to the import's key, ImportService.analyse then
ImportWorker.analyse, set_mapping, dry_run with a runner that starts no execution), and then runs
`ImportWorker.split` in a fresh subprocess, as ImportFunction runs it. The subprocess reports its RSS once
the worker and its clients are ready (the baseline), its peak RSS at the end (`VmHWM` from /proc, and
`ru_maxrss`), and the split's wall and CPU time. The subprocess is started through /bin/sh, which forks
it: started straight from the benchmark's process, its ru_maxrss would begin at the high-water mark of
the forked copy of that process (the kernel keeps it across exec).

Two variants (`--variant worker`, the default, `in-process` or `both`):

- worker: the subprocess is the worker alone. S3 and DynamoDB are moto in server mode inside the
  benchmark's own process, reached over HTTP, as Lambda reaches AWS; nothing the emulator holds is in the
  measured process. This is the figure the goal applies to.
- in-process: the subprocess runs the local stack itself (moto in-process, as the tests do) and prepares
  the import, then the split. moto keeps every chunk file it is given in memory (objects under 16 MB are
  not spooled to disk), so this peak includes about as many bytes as the chunk files hold. The
  subprocess's VmHWM is reset (`/proc/self/clear_refs`) just before the split, so the upload and the
  setup do not count in it (ru_maxrss cannot be reset: it is the whole subprocess's peak, setup
  included). Reported for comparison, with the bytes of chunk files moto held at the end.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import resource
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT / "layers" / "audience") not in sys.path:
    sys.path.insert(0, str(ROOT / "layers" / "audience"))  # the layer, as Lambda puts it on the path
RESULTS = ROOT / "benchmarks" / "results"
TEMPLATE = ROOT / "template.yaml"
GOAL_MB = 300.0
VARIANTS = ("worker", "in-process")
CHILD = "benchmarks.import_memory"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--rows", type=int, default=1_000_000, help="data rows in the file (default 1000000)")
    parser.add_argument(
        "--variant", choices=(*VARIANTS, "both"), default="worker", help="which variant(s) to run (default worker)"
    )
    parser.add_argument("--tmp-dir", type=Path, help="where the file and the worker's temporary files go")
    parser.add_argument("--output", type=Path, default=RESULTS / "import_memory.json")


# -- in the measured subprocess -------------------------------------------------------------------


def _status_kb(field: str) -> int:
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise RuntimeError(f"{field} not in /proc/self/status")


def _split(org_id: str, import_id: str, run_id: str) -> dict[str, Any]:
    """Build the worker, note the baseline, split, note the peak."""
    from audience.imports.wiring import import_worker

    worker = import_worker()
    worker._imports.get(org_id, import_id)  # clients made and used once, as on a warm worker
    baseline_kb = _status_kb("VmRSS")
    try:
        with open("/proc/self/clear_refs", "w") as clear:
            clear.write("5")  # the peak so far (setup, upload) does not count
        reset = True
    except OSError:
        reset = False
    wall, cpu = time.perf_counter(), time.process_time()
    result = worker.split(org_id, import_id, run_id)
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    return {
        "baseline_rss_mb": round(baseline_kb / 1024, 1),
        "peak_ru_maxrss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
        "peak_vmhwm_mb": round(_status_kb("VmHWM") / 1024, 1),
        "peak_reset_before_split": reset,
        "split_seconds": round(wall, 1),
        "split_cpu_seconds": round(cpu, 1),
        "chunks": len(result["chunks"]),
    }


def _child(spec: dict[str, Any]) -> dict[str, Any]:
    if spec["variant"] == "worker":
        return _split(spec["org_id"], spec["import_id"], spec["run_id"])
    from audience import container
    from devstack.testing import local_stack

    with local_stack(str(TEMPLATE), parameters={"Stage": "bench"}) as stack:
        container.reset()
        org_id, import_id, run_id = prepare(stack, Path(spec["path"]))
        found = _split(org_id, import_id, run_id)
        found["moto_chunk_bytes_mb"] = round(_chunk_bytes(stack, import_id) / 1e6, 1)
        found.update(_run_counts(org_id, import_id))
        container.reset()
    return found


# -- in the benchmark's process -------------------------------------------------------------------


class _NoRunner:
    """The state machine is not started: the benchmark runs each task itself."""

    def start(self, name: str, payload: dict[str, Any]) -> None:
        pass


def prepare(stack: Any, path: Path) -> tuple[str, str, str]:
    """An org with the file's custom fields, and an import of `path` analysed, mapped and with a dry run
    begun: (org id, import id, run id)."""
    from audience import admin, container
    from audience.imports import wiring
    from audience.imports.repository import ImportsRepository
    from audience.imports.service import ImportService
    from audience.settings import get_settings
    from benchmarks import importdata

    org_id = admin.create_org("Bench", default_country="ID")["org_id"]
    for name, type_ in importdata.WIDE_FIELD_TYPES.items():
        container.org_service().create_field(org_id, name, type_)
    service = ImportService(
        ImportsRepository(get_settings().contacts_table),
        wiring.files(),
        _NoRunner,  # type: ignore[arg-type]
        org_context=wiring.org_context,
        static_segment=wiring.static_segment,
    )
    imp, _ = service.create(org_id, file_name=path.name, size=path.stat().st_size)
    with path.open("rb") as data:
        stack.client("s3").put_object(Bucket=wiring.files().bucket, Key=imp.object_key, Body=data)
    service.analyse(org_id, imp.id, {})
    outcome = wiring.import_worker().analyse(org_id, imp.id)
    if outcome["status"] != "analysed":
        raise RuntimeError(f"the analysis failed: {outcome}")
    service.set_mapping(org_id, imp.id, importdata.mapping(wide=True))
    started = service.dry_run(org_id, imp.id)
    assert started.run is not None
    return org_id, imp.id, started.run.id


def _chunk_bytes(stack: Any, import_id: str) -> int:
    from audience.imports import wiring

    s3 = stack.client("s3")
    total = 0
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=wiring.files().bucket):
        total += sum(o["Size"] for o in page.get("Contents", []) if import_id in o["Key"] and "/chunks/" in o["Key"])
    return total


def _run_counts(org_id: str, import_id: str) -> dict[str, Any]:
    from audience.imports.repository import ImportsRepository
    from audience.settings import get_settings

    run = ImportsRepository(get_settings().contacts_table).get(org_id, import_id).run
    assert run is not None
    return {"rows": run.rows, "counts": dict(run.counts)}


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _run_child(spec: dict[str, Any], env: dict[str, str]) -> dict[str, Any]:
    # Started from a shell that forks it, not exec'd straight from this process: after fork and exec the
    # new program's ru_maxrss starts from the high-water mark of the forked copy of this (large) process.
    completed = subprocess.run(
        ["/bin/sh", "-c", '"$0" "$@"; status=$?; exit $status', sys.executable, "-m", CHILD, json.dumps(spec)],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    if completed.returncode != 0:
        raise RuntimeError(f"the {spec['variant']} subprocess failed:\n{completed.stderr[-4000:]}")
    return json.loads(completed.stdout.strip().splitlines()[-1])


def worker_variant(path: Path, tmp_dir: Path) -> dict[str, Any]:
    """moto as a server in this process; the split in a subprocess that reaches it over HTTP."""
    from moto.core.config import default_user_config
    from moto.moto_server.threaded_moto_server import ThreadedMotoServer

    from audience import container
    from devstack.emulator import MOTO_CONFIG
    from devstack.stack import LocalStack

    for section, values in MOTO_CONFIG.items():
        default_user_config.setdefault(section, {}).update(values)  # type: ignore[misc]
    logging.getLogger("werkzeug").setLevel(logging.WARNING)  # no line per request
    port = _free_port()
    saved = dict(os.environ)
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    stack = None
    try:
        os.environ.update(
            AWS_ENDPOINT_URL=f"http://127.0.0.1:{port}",
            AWS_ACCESS_KEY_ID="bench",
            AWS_SECRET_ACCESS_KEY="bench",  # moto ignores them
        )
        stack = LocalStack.from_template(TEMPLATE, {"Stage": "bench"}, stack_name="audience-bench")
        stack.provision()
        container.reset()
        org_id, import_id, run_id = prepare(stack, path)
        env = {**os.environ, "IMPORT_TMP_DIR": str(tmp_dir), "PYTHONDONTWRITEBYTECODE": "1"}
        spec = {"variant": "worker", "org_id": org_id, "import_id": import_id, "run_id": run_id}
        found = _run_child(spec, env)
        found.update(_run_counts(org_id, import_id))
        return found
    finally:
        if stack is not None:
            stack.close()
        container.reset()
        server.stop()
        os.environ.clear()
        os.environ.update(saved)


def in_process_variant(path: Path, tmp_dir: Path) -> dict[str, Any]:
    env = {**os.environ, "IMPORT_TMP_DIR": str(tmp_dir), "PYTHONDONTWRITEBYTECODE": "1"}
    env = {k: v for k, v in env.items() if not k.startswith("AWS_ENDPOINT_URL")}
    return _run_child({"variant": "in-process", "path": str(path)}, env)


def run(args: argparse.Namespace) -> bool:
    if str(ROOT) not in sys.path:
        sys.path.insert(0, str(ROOT))
    from benchmarks import importdata

    code = importdata.code_version()  # the code this run loads, before it runs

    variants = VARIANTS if args.variant == "both" else (args.variant,)
    results: dict[str, Any] = {}
    with tempfile.TemporaryDirectory(prefix="bench-import-memory-", dir=args.tmp_dir) as directory:
        started = time.perf_counter()
        path = importdata.write_csv(Path(directory) / "contacts.csv", args.rows, wide=True)
        size = path.stat().st_size
        print(
            f"file: {args.rows:,} rows, {size / 1e6:.1f} MB ({size / args.rows:.0f} bytes a row), "
            f"written in {time.perf_counter() - started:.0f} s\n",
            flush=True,
        )
        for variant in variants:
            run_variant = worker_variant if variant == "worker" else in_process_variant
            results[variant] = run_variant(path, Path(directory))
            results[variant]["rows_per_second"] = round(args.rows / results[variant]["split_seconds"])

    print(
        "| Variant | Baseline RSS MB | Peak RSS MB (VmHWM) | ru_maxrss MB | Peak above baseline MB | Split s | CPU s "
        "| Rows/s | Goal | Result |"
    )
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|---|")
    met = True
    for variant, found in results.items():
        # In the worker variant both figures are the split's; in-process, ru_maxrss includes the setup.
        peak = found["peak_vmhwm_mb"]
        if variant == "worker":
            peak = max(peak, found["peak_ru_maxrss_mb"])
        found["peak_mb"] = peak
        found["result"] = ("PASS" if peak <= GOAL_MB else "OVER") if variant == "worker" else "reference"
        goal = f"≤ {GOAL_MB:.0f} MB" if variant == "worker" else "(reference)"
        if variant == "worker":
            met = found["result"] == "PASS"
        print(
            f"| {variant} | {found['baseline_rss_mb']:.0f} | {peak:.0f} | {found['peak_ru_maxrss_mb']:.0f} "
            f"| {peak - found['baseline_rss_mb']:.0f} "
            f"| {found['split_seconds']:.0f} | {found['split_cpu_seconds']:.0f} | {found['rows_per_second']:,} "
            f"| {goal} | {found['result'] if variant == 'worker' else '—'} |"
        )
    for variant, found in results.items():
        extra = f"; chunk files moto held: {found['moto_chunk_bytes_mb']} MB" if "moto_chunk_bytes_mb" in found else ""
        print(f"\n{variant}: {found['rows']:,} rows, {found['chunks']} chunks, counts {found['counts']}{extra}")

    fields = {
        "rows": args.rows,
        "file_bytes": size,
        "goal_mb": GOAL_MB,
        "variants": results,
    }
    importdata.write_results(args.output, "import_memory", fields, code=code)
    return met


if __name__ == "__main__":  # the measured subprocess
    sys.path.insert(0, str(ROOT))
    print(json.dumps(_child(json.loads(sys.argv[1]))))
