"""Cold start: the import cost of each function's handler module, as a ratio to `import boto3`.

Lambda imports a function's handler module once per execution environment, before the first event, so
that import is the part of a cold start the code controls. Absolute times depend on the machine; the ratio
to `import boto3` (which every function pays anyway) measured side by side in the same run carries over.

Each sample is a fresh interpreter (the project's .venv python) that times one `import` with
time.perf_counter, with the function's environment variables and the sys.path Lambda gives it: the
function's code, the layer (the audience package, and its requirements installed for this machine into
.local/bench/layer) and the standard library, nothing else. The .venv's own packages are kept out
(`python -S`): it holds test tools (httpx, requests, moto, ...) that Powertools' Tracer would find and
patch at import, which it cannot do on Lambda. Interpreters alternate (boto3, fn1, fn2, boto3, fn1, ...)
so that noise on a shared machine spreads over all of them; a first warm-up round is discarded.

By default every module is byte-compiled first, so the figures are import work alone. `--no-bytecode`
measures instead from sources without any .pyc (the way `sam build` ships the layer and functions today,
to a read-only file system where Python cannot cache what it compiles).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import platform
import re
import shutil
import statistics
import subprocess
import sys
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parent.parent
TEMPLATE = ROOT / "template.yaml"
LAYER_DIR = ROOT / "layers" / "audience"
LAYER_REQUIREMENTS = LAYER_DIR / "requirements.txt"
WORK_DIR = ROOT / ".local" / "bench"
LAYER_SITE = WORK_DIR / "layer"
RESULTS_DIR = ROOT / "benchmarks" / "results"
PYTHON = ROOT / ".venv" / "bin" / "python"
BASELINE = "boto3"

# Goals, as a ratio of median import times to `import boto3`. The API function may pay for its web
# framework; every other function (webhooks, queue and stream consumers) must stay close to boto3.
GOALS = {"ApiFunction": 2.5}
DEFAULT_GOAL = 1.3

# What the Lambda runtime sets in every execution environment. LAMBDA_TASK_ROOT matters: Powertools'
# Tracer only patches clients (and so only pays for X-Ray) when it sees it. Nothing here lets an import
# reach the network: the credentials are dummies and instance metadata is off.
LAMBDA_ENV = {
    "AWS_REGION": "us-east-1",
    "AWS_DEFAULT_REGION": "us-east-1",
    "AWS_EXECUTION_ENV": "AWS_Lambda_python3.13",
    "AWS_LAMBDA_FUNCTION_VERSION": "$LATEST",
    "AWS_LAMBDA_INITIALIZATION_TYPE": "on-demand",
    "AWS_XRAY_CONTEXT_MISSING": "LOG_ERROR",
    "AWS_XRAY_DAEMON_ADDRESS": "169.254.79.129:2000",
    "AWS_ACCESS_KEY_ID": "AKIAIOSFODNN7EXAMPLE",
    "AWS_SECRET_ACCESS_KEY": "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY",
    "AWS_SESSION_TOKEN": "bench",
    "AWS_EC2_METADATA_DISABLED": "true",
    "TZ": ":UTC",
    "LANG": "en_US.UTF-8",
}

# Runs inside each fresh interpreter: time one import, print the milliseconds.
_PROBE = (
    "import importlib, sys, time\n"
    "t0 = time.perf_counter()\n"
    "importlib.import_module(sys.argv[1])\n"
    "print((time.perf_counter() - t0) * 1000)\n"
)


# -- the template -----------------------------------------------------------------------------------


class _TemplateLoader(yaml.SafeLoader):
    """Reads CloudFormation short-form tags (!Ref, !Sub, !GetAtt, ...) into their long form."""


def _construct_tag(loader: yaml.SafeLoader, suffix: str, node: yaml.Node) -> dict[str, Any]:
    name = "Ref" if suffix == "Ref" else f"Fn::{suffix}"
    if isinstance(node, yaml.ScalarNode):
        value: Any = loader.construct_scalar(node)
        if suffix == "GetAtt":
            value = value.split(".", 1)
    elif isinstance(node, yaml.SequenceNode):
        value = loader.construct_sequence(node, deep=True)
    else:
        value = loader.construct_mapping(node, deep=True)  # type: ignore[arg-type]
    return {name: value}


_TemplateLoader.add_multi_constructor("!", _construct_tag)


@dataclass(frozen=True)
class Function:
    """An AWS::Serverless::Function as the benchmark needs it."""

    logical_id: str
    code_uri: str  # relative to the repository
    handler: str
    env: dict[str, str]  # the template's variables (intrinsics replaced) and Lambda's own

    @property
    def module(self) -> str:
        return self.handler.rsplit(".", 1)[0]

    @property
    def goal(self) -> float:
        return GOALS.get(self.logical_id, DEFAULT_GOAL)


def _env_value(value: Any, parameters: dict[str, Any]) -> str:
    """An environment value with intrinsics replaced: parameter defaults, or a dummy resource name."""
    if isinstance(value, dict) and "Ref" in value:
        ref = value["Ref"]
        if ref in parameters and "Default" in parameters[ref]:
            return str(parameters[ref]["Default"])
        return f"audience-bench-{re.sub(r'(?<!^)(?=[A-Z])', '-', ref).lower()}"
    if isinstance(value, dict):
        return "audience-bench-value"
    return str(value)


def functions(template_path: Path = TEMPLATE) -> list[Function]:
    """Every AWS::Serverless::Function of the template with the environment Lambda would give it."""
    template = yaml.load(template_path.read_text(), Loader=_TemplateLoader)
    parameters = template.get("Parameters") or {}
    globals_fn = (template.get("Globals") or {}).get("Function") or {}
    global_vars = (globals_fn.get("Environment") or {}).get("Variables") or {}
    found = []
    for logical_id, resource in (template.get("Resources") or {}).items():
        if resource.get("Type") != "AWS::Serverless::Function":
            continue
        props = resource.get("Properties") or {}
        handler = props.get("Handler") or globals_fn["Handler"]
        variables = {**global_vars, **((props.get("Environment") or {}).get("Variables") or {})}
        env = {
            **{name: _env_value(value, parameters) for name, value in variables.items()},
            "AWS_LAMBDA_FUNCTION_NAME": f"audience-bench-{logical_id}",
            "AWS_LAMBDA_FUNCTION_MEMORY_SIZE": str(props.get("MemorySize") or globals_fn.get("MemorySize") or 128),
            "_HANDLER": handler,
        }
        found.append(Function(logical_id, props["CodeUri"].rstrip("/"), handler, env))
    return found


# -- what each interpreter sees -----------------------------------------------------------------------


def layer_site(python: Path) -> Path:
    """The layer's requirements installed for this machine (`sam build` installs them for arm64), redone
    whenever the requirements or the interpreter change."""
    version = _run([str(python), "-c", "import sys; print(sys.version)"]).stdout
    stamp = hashlib.sha256(LAYER_REQUIREMENTS.read_bytes() + version.encode()).hexdigest()
    stamp_file = LAYER_SITE / ".requirements-sha256"
    if stamp_file.exists() and stamp_file.read_text() == stamp:
        return LAYER_SITE
    shutil.rmtree(LAYER_SITE, ignore_errors=True)
    print(f"installing the layer's requirements into {LAYER_SITE.relative_to(ROOT)}", file=sys.stderr, flush=True)
    subprocess.run(
        [
            *(str(python), "-m", "pip", "install", "--quiet", "--disable-pip-version-check"),
            *("--no-warn-script-location", "--target", str(LAYER_SITE), "-r", str(LAYER_REQUIREMENTS)),
        ],
        check=True,
    )
    stamp_file.write_text(stamp)
    return LAYER_SITE


@dataclass(frozen=True)
class Layout:
    """Where the layer and the functions' code are read from, and whether .pyc files may be used."""

    layer_dirs: tuple[Path, ...]  # /opt/python on Lambda: the audience package, then its requirements
    code_root: Path  # the repository, or a copy of it
    bytecode: bool

    @classmethod
    def compiled(cls, python: Path, fns: list[Function]) -> Layout:
        """The repository itself, every module byte-compiled first (no sample pays for compiling)."""
        layout = cls((LAYER_DIR, layer_site(python)), ROOT, bytecode=True)
        dirs = [LAYER_DIR, *(ROOT / fn.code_uri for fn in fns)]
        _run([str(python), "-m", "compileall", "-q", *map(str, dirs)])
        return layout

    @classmethod
    def sources_only(cls, python: Path, fns: list[Function]) -> Layout:
        """A copy of the layer and the functions without any .pyc, as `sam build` ships them."""
        site = layer_site(python)
        root = WORK_DIR / "no-bytecode"
        shutil.rmtree(root, ignore_errors=True)
        skip = shutil.ignore_patterns("__pycache__", "*.pyc")
        shutil.copytree(LAYER_DIR, root / "layer" / "audience", ignore=skip)
        shutil.copytree(site, root / "layer" / "site", ignore=skip)
        for fn in fns:
            shutil.copytree(ROOT / fn.code_uri, root / fn.code_uri, ignore=skip)
        return cls((root / "layer" / "audience", root / "layer" / "site"), root, bytecode=False)

    def env(self, fn: Function | None) -> dict[str, str]:
        """A clean environment like Lambda's (nothing inherited but PATH and HOME) for one interpreter."""
        env = {
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            "HOME": os.environ.get("HOME", "/tmp"),
            **LAMBDA_ENV,
        }
        path = [str(d) for d in self.layer_dirs]
        if fn is not None:
            code_dir = self.code_root / fn.code_uri
            path.insert(0, str(code_dir))  # Lambda's order: /var/task, then /opt/python
            env.update(fn.env, LAMBDA_TASK_ROOT=str(code_dir))
        env["PYTHONPATH"] = os.pathsep.join(path)
        if not self.bytecode:
            env["PYTHONDONTWRITEBYTECODE"] = "1"
        return env


# -- measuring --------------------------------------------------------------------------------------


@dataclass
class Target:
    """One module to import in fresh interpreters: the baseline, or a function's handler module."""

    name: str
    module: str
    env: dict[str, str]
    function: Function | None = None
    samples_ms: list[float] = field(default_factory=list)


def _run(command: list[str], env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    completed = subprocess.run(command, env=env, cwd=ROOT, capture_output=True, text=True, check=False)
    if completed.returncode != 0:
        raise RuntimeError(f"{' '.join(command[:4])} ... failed:\n{completed.stderr}")
    return completed


def _import_ms(target: Target, python: Path) -> float:
    return float(_run([str(python), "-S", "-c", _PROBE, target.module], target.env).stdout.split()[-1])


def importtime(target: Target, python: Path, runs: int = 5) -> dict[str, float]:
    """Median self time (ms) of each module `-X importtime` reports for importing the target's module."""
    samples: dict[str, list[float]] = {}
    for _ in range(runs):
        stderr = _run([str(python), "-S", "-X", "importtime", "-c", f"import {target.module}"], target.env).stderr
        for line in stderr.splitlines():
            match = re.match(r"import time:\s+(\d+) \|\s+\d+ \| *(\S+)", line)
            if match:
                samples.setdefault(match.group(2), []).append(int(match.group(1)) / 1000)
    return {module: statistics.median(ms) for module, ms in samples.items()}


def heaviest(target: Target, baseline: Target, python: Path, top: int = 8) -> dict[str, Any]:
    """Where a function's import time goes beyond what `import boto3` already loads: self times from
    `-X importtime` (inflated by its own bookkeeping, so good for ranking rather than adding up), by
    top-level package and by module."""
    shared = importtime(baseline, python)
    extra = {module: ms for module, ms in importtime(target, python).items() if module not in shared}
    packages: dict[str, float] = {}
    for module, ms in extra.items():
        packages[module.split(".", 1)[0]] = packages.get(module.split(".", 1)[0], 0.0) + ms
    ranked_packages = sorted(packages.items(), key=lambda kv: kv[1], reverse=True)[:top]
    ranked_modules = sorted(extra.items(), key=lambda kv: kv[1], reverse=True)[:top]
    return {
        "beyond_boto3_ms": round(sum(extra.values()), 1),
        "packages_ms": {name: round(ms, 1) for name, ms in ranked_packages},
        "modules_ms": {name: round(ms, 1) for name, ms in ranked_modules},
    }


def measure(rounds: int, python: Path, *, bytecode: bool = True) -> list[Target]:
    """The baseline and every function, alternating, `rounds` samples each after one warm-up round."""
    fns = functions()
    layout = Layout.compiled(python, fns) if bytecode else Layout.sources_only(python, fns)
    targets = [Target(BASELINE, BASELINE, layout.env(None))]
    targets += [Target(fn.logical_id, fn.module, layout.env(fn), fn) for fn in fns]
    for round_ in range(rounds + 1):
        for target in targets:
            ms = _import_ms(target, python)
            if round_:
                target.samples_ms.append(ms)
        print(f"\rround {round_}/{rounds}", end="", file=sys.stderr, flush=True)
    print(file=sys.stderr)
    return targets


# -- the benchmark ----------------------------------------------------------------------------------


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--rounds", type=int, default=15, help="measured rounds (one warm-up round is added)")
    parser.add_argument("--python", type=Path, default=PYTHON, help="interpreter to measure with (.venv's)")
    parser.add_argument(
        "--no-bytecode", action="store_true", help="measure from sources without .pyc files, as deployed today"
    )
    parser.add_argument("--output", type=Path, help="JSON results (default: benchmarks/results/cold_start*.json)")


def run(args: argparse.Namespace) -> bool:
    targets = measure(args.rounds, args.python, bytecode=not args.no_bytecode)
    baseline = targets[0]
    base = statistics.median(baseline.samples_ms)
    rows = []
    for target in targets:
        median = statistics.median(target.samples_ms)
        goal = target.function.goal if target.function else None
        row: dict[str, Any] = {
            "function": target.name if target.function else None,
            "imports": target.function.handler if target.function else f"import {target.module}",
            "median_ms": round(median, 1),
            "min_ms": round(min(target.samples_ms), 1),
            "max_ms": round(max(target.samples_ms), 1),
            "ratio": round(median / base, 2),
            "goal": goal,
            "result": None if goal is None else ("PASS" if median / base <= goal else "OVER"),
            "samples_ms": [round(ms, 2) for ms in target.samples_ms],
        }
        if row["result"] == "OVER":
            row["heaviest_imports"] = heaviest(target, baseline, args.python)
        rows.append(row)

    print("| Function | Handler module | Median ms | Min-max ms | Ratio to boto3 | Goal | Result |")
    print("|---|---|---:|---:|---:|---:|---|")
    for row in rows:
        goal = f"≤ {row['goal']}x" if row["goal"] else "—"
        print(
            f"| {row['function'] or '(baseline)'} | `{row['imports']}` | {row['median_ms']:.1f} "
            f"| {row['min_ms']:.0f}-{row['max_ms']:.0f} | {row['ratio']:.2f}x | {goal} | {row['result'] or '—'} |"
        )
    for row in rows:
        if found := row.get("heaviest_imports"):
            print(f"\n{row['function']} is over its goal. Beyond what boto3 loads (-X importtime self ms, to rank):")
            print("  by package: " + ", ".join(f"{name} {ms}" for name, ms in found["packages_ms"].items()))
            print("  by module:  " + ", ".join(f"{name} {ms}" for name, ms in found["modules_ms"].items()))

    output = args.output or RESULTS_DIR / ("cold_start_no_bytecode.json" if args.no_bytecode else "cold_start.json")
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_text(
        json.dumps(
            {
                "benchmark": "cold_start",
                "date": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
                "bytecode": not args.no_bytecode,
                "rounds": args.rounds,
                "python": _run([str(args.python), "-c", "import sys; print(sys.version.split()[0])"]).stdout.strip(),
                "machine": {"platform": platform.platform(), "cpus": os.cpu_count()},
                "baseline": f"import {BASELINE}",
                "results": rows,
            },
            indent=2,
            ensure_ascii=False,
        )
        + "\n"
    )
    print(f"\nresults: {output.relative_to(ROOT) if output.is_relative_to(ROOT) else output}")
    return all(row["result"] != "OVER" for row in rows)
