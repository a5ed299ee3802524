"""``python -m benchmarks [names...] [--quick] [--end-to-end | --e2e-log FILE]``: run and summarise.

Without names every benchmark runs (train_step, mask_memory, sequence_format, ranking, scale, end_to_end); the
end-to-end figures are re-read from the last recorded run unless ``--end-to-end`` re-runs the
README main command (~6 min) or ``--e2e-log`` names its saved output.
"""

from __future__ import annotations

import argparse
import importlib
import sys
import time
import traceback

from .common import log, machine, write_json

BENCHMARKS = ["train_step", "mask_memory", "sequence_format", "ranking", "scale", "end_to_end"]


def _fmt(value) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "yes" if value else "NO"
    if isinstance(value, float):
        return f"{value:,.3g}" if abs(value) < 100 else f"{value:,.0f}"
    return str(value)


def table(rows: list[tuple]) -> str:
    """Plain-text table of (what, ours, reference, ratio, target, met) rows."""
    header = ("figure", "ours", "reference", "ratio", "target", "met")
    cells = [header] + [tuple(_fmt(v) if i != 3 or v is None else f"{v:.2f}x" for i, v in enumerate(r)) for r in rows]
    widths = [max(len(c[i]) for c in cells) for i in range(len(header))]
    lines = ["  ".join(c[i].ljust(widths[i]) for i in range(len(header))) for c in cells]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__.splitlines()[0])
    parser.add_argument("names", nargs="*", metavar="NAME",
                        help=f"benchmarks to run (default: all): {', '.join(BENCHMARKS)}")
    parser.add_argument("--quick", action="store_true", help="smoke run: fewer repeats, users and sizes")
    parser.add_argument("--end-to-end", action="store_true", help="re-run the README main command (~6 min)")
    parser.add_argument("--e2e-log", help="parse the saved console output of a main-command run")
    args = parser.parse_args(argv)
    unknown = [n for n in args.names if n not in BENCHMARKS]
    if unknown:
        parser.error(f"unknown benchmark {unknown[0]!r}; choose from {', '.join(BENCHMARKS)}")
    names = args.names or BENCHMARKS
    start = time.perf_counter()
    log(f"benchmarks: {', '.join(names)}{' (quick)' if args.quick else ''} on {machine()['cpu']}")

    rows, failed = [], []
    for name in names:
        module = importlib.import_module(f".{name}", __package__)
        try:
            if name == "end_to_end":
                figures = module.run(args.quick, execute=args.end_to_end, log_file=args.e2e_log)
            else:
                figures = module.run(args.quick)
            rows.extend(module.summary(figures))
        except Exception as err:  # noqa: BLE001 - keep going: one failure must not hide the other figures
            traceback.print_exc()
            failed.append(f"{name}: {type(err).__name__}: {err}"[:300])
            rows.append((f"{name} FAILED", None, None, None, "", False))
    elapsed = time.perf_counter() - start
    print()
    print(table(rows))
    print(f"\nsuite time {elapsed / 60:.1f} min" + (f"; failed: {failed}" if failed else ""))
    if not args.names or len(names) > 1:
        write_json("summary", {"quick": args.quick, "names": names, "suite_s": elapsed, "failed": failed,
                               "rows": [dict(zip(("figure", "ours", "reference", "ratio", "target", "met"), r))
                                        for r in rows]})
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
