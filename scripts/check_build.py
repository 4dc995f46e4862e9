"""Check what `sam build` produced: the layer ships byte-code for python3.13 and arm64 native code."""

from __future__ import annotations

import sys
from pathlib import Path

LAYER = Path(".aws-sam/build/AudienceLayer/python")
ELF_MACHINE_AARCH64 = 183


def main() -> int:
    problems = []
    sources = list(LAYER.rglob("*.py"))
    compiled = {p.parent.parent / (p.name.split(".")[0] + ".py") for p in LAYER.rglob("__pycache__/*.cpython-313.pyc")}
    missing = [s for s in sources if s not in compiled]
    if not sources:
        problems.append(f"{LAYER} holds no Python sources: did `sam build` run?")
    elif missing:
        problems.append(f"{len(missing)} of {len(sources)} modules have no python3.13 .pyc, e.g. {missing[0]}")
    for native in LAYER.rglob("*.so"):
        header = native.read_bytes()[:20]
        if header[:4] != b"\x7fELF" or int.from_bytes(header[18:20], "little") != ELF_MACHINE_AARCH64:
            problems.append(f"{native} is not an arm64 (aarch64) shared object")
    for problem in problems:
        print(f"build check: {problem}", file=sys.stderr)
    if not problems:
        print(f"build check: {len(sources)} modules byte-compiled for python3.13; native code is aarch64")
    return 1 if problems else 0


if __name__ == "__main__":
    raise SystemExit(main())
