"""Run the benchmarks: ``python -m benchmarks [NAME ...] [--out runs/bench]``."""

import argparse
import importlib
import pkgutil
from pathlib import Path

import benchmarks


def main() -> None:
    names = sorted(m.name[len("bench_"):] for m in pkgutil.iter_modules(benchmarks.__path__)
                   if m.name.startswith("bench_"))
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("names", nargs="*", choices=names + [[]], default=[], metavar="NAME",
                        help=f"benchmarks to run (default all): {', '.join(names)}")
    parser.add_argument("--out", type=Path, default=Path("runs/bench"))
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    for name in args.names or names:
        print(f"== benchmark {name}")
        importlib.import_module(f"benchmarks.bench_{name}").main(args.out)


if __name__ == "__main__":
    main()
