"""Run the benchmarks: `python -m benchmarks` runs them all, `python -m benchmarks NAME [options]` one."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from dataclasses import dataclass
from types import ModuleType

from benchmarks import (
    broadcast_send,
    cold_start,
    contact_quality,
    follow_ups,
    import_e2e,
    import_memory,
    import_pipeline,
    import_writes,
    load,
    reliability,
    segment_eval,
    segment_latency,
    segment_refresh,
    webhook_ack,
)


@dataclass(frozen=True)
class Benchmark:
    """A benchmark module: `add_arguments(parser)` declares its options, `run(args)` returns whether
    every goal was met."""

    name: str
    module: ModuleType

    @property
    def summary(self) -> str:
        return (self.module.__doc__ or "").strip().splitlines()[0]

    @property
    def add_arguments(self) -> Callable[[argparse.ArgumentParser], None]:
        return self.module.add_arguments

    @property
    def run(self) -> Callable[[argparse.Namespace], bool]:
        return self.module.run


# A new benchmark is a module with add_arguments/run, listed here.
BENCHMARKS = [
    Benchmark("cold_start", cold_start),
    Benchmark("segment_latency", segment_latency),
    Benchmark("segment_refresh", segment_refresh),
    Benchmark("segment_eval", segment_eval),
    Benchmark("import_pipeline", import_pipeline),
    Benchmark("import_memory", import_memory),
    Benchmark("import_writes", import_writes),
    Benchmark("import_e2e", import_e2e),
    Benchmark("webhook_ack", webhook_ack),
    Benchmark("broadcast_send", broadcast_send),
    Benchmark("follow_ups", follow_ups),
    Benchmark("contact_quality", contact_quality),
    Benchmark("load", load),
    Benchmark("reliability", reliability),
]


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__)
    parser.add_argument(
        "--check", action="store_true", help="exit 1 when a benchmark misses a goal (default: report only)"
    )
    commands = parser.add_subparsers(dest="name", metavar="NAME", help="run only this benchmark")
    for bench in BENCHMARKS:
        bench.add_arguments(commands.add_parser(bench.name, help=bench.summary, description=bench.summary))
    args = parser.parse_args(argv)

    selected = [b for b in BENCHMARKS if args.name in (None, b.name)]
    met = True
    for bench in selected:
        # Running all of them: each gets its defaults.
        bench_args = args if args.name else commands.choices[bench.name].parse_args([])
        print(f"## {bench.name}: {bench.summary}\n", flush=True)
        met = bench.run(bench_args) and met
        print()
    return 1 if args.check and not met else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
