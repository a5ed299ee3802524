"""Memory and speed of ``recbole_msl.convert`` on a synthetic Amazon 2018 category file.

    .venv/bin/python -m benchmarks.convert_memory [--lines 1000000] [--k_core 5] [--keep DIR]

Writes ``<N>`` gzip JSON review lines in the 2018 format (with review text, as the real files have)
and a metadata file with one title per item (about 1 line in 10 repeated, some titles with HTML),
then converts them in a fresh child process, so that the peak RSS (VmHWM) is the conversion's own
plus the imports (``recbole_msl`` imports RecBole and torch; their RSS is reported separately).
"""

from __future__ import annotations

import argparse
import gzip
import json
import os
import random
import subprocess
import sys
import tempfile
import time


def _status_mib(field: str) -> float:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1]) / 1024
    return float("nan")


def generate(folder: str, lines: int, seed: int = 0) -> tuple[str, str]:
    """``Books.json.gz`` with ``lines`` reviews by lines/8 users on lines/16 items, and ``meta_Books.json.gz``."""
    rng = random.Random(seed)
    n_users, n_items = max(lines // 8, 1), max(lines // 16, 1)
    text = "I enjoyed this one; the plot moves quickly and the characters feel real. " * 3
    reviews = os.path.join(folder, "Books.json.gz")
    with gzip.open(reviews, "wt", encoding="utf-8", compresslevel=1) as f:
        for _ in range(lines):
            user, item = rng.randrange(n_users), int(n_items * rng.random() ** 2)  # popular items first
            f.write(f'{{"overall": {rng.randint(1, 5)}.0, "verified": true, "reviewTime": "09 13, 2009", '
                    f'"reviewerID": "A{user:013d}", "asin": "{item:010d}", "style": {{"Format:": " Paperback"}}, '
                    f'"reviewerName": "Reader", "reviewText": "{text}", "summary": "Good", '
                    f'"unixReviewTime": {1_200_000_000 + rng.randrange(300_000_000)}}}\n')
    meta = os.path.join(folder, "meta_Books.json.gz")
    with gzip.open(meta, "wt", encoding="utf-8", compresslevel=1) as f:
        for item in range(n_items):
            title = f"Book &amp; <span class=\"a\">Volume</span> {item}" if item % 5 == 0 else f"Book {item}"
            record = json.dumps({"category": ["Books"], "description": ["A book."], "title": title,
                                 "also_buy": [f"{(item + 1) % n_items:010d}"], "asin": f"{item:010d}"})
            f.write(record + "\n")
            if item % 10 == 0:
                f.write(record + "\n")  # the 2018 metadata repeats some products
    return reviews, meta


def child(folder: str, k_core: int | None) -> None:
    """Convert in this (fresh) process; print the figures as one JSON line."""
    start_import = time.perf_counter()
    from recbole_msl.convert import convert

    import_s = time.perf_counter() - start_import
    base = _status_mib("VmRSS")
    options = {"k_core": k_core} if k_core else {}
    report = convert("amazon2018", os.path.join(folder, "out"), "books", reviews=os.path.join(folder, "Books.json.gz"),
                     meta=os.path.join(folder, "meta_Books.json.gz"), **options)
    read = report.steps[0]
    print(json.dumps({"lines": report.lines_read, "reviews": read.interactions, "users": read.users,
                      "items": read.items, "kept": report.steps[-1].interactions, "seconds": report.seconds,
                      "import_s": import_s, "rss_after_import_mib": base, "peak_rss_mib": _status_mib("VmHWM")}))


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.convert_memory", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--lines", type=int, default=1_000_000, help="review lines to generate (default 1,000,000)")
    parser.add_argument("--k_core", type=int, default=5, help="k-core of the conversion (0: none; default 5)")
    parser.add_argument("--keep", default=None, help="generate into this folder and keep it (default: a temp dir)")
    parser.add_argument("--child", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        child(args.child, args.k_core)
        return 0
    with tempfile.TemporaryDirectory(prefix="convert-memory-") as tmp:
        folder = args.keep or tmp
        os.makedirs(folder, exist_ok=True)
        started = time.perf_counter()
        reviews, meta = generate(folder, args.lines)
        print(f"generated {args.lines:,} review lines in {time.perf_counter() - started:.1f} s "
              f"({os.path.getsize(reviews) / 2**20:.0f} MiB + {os.path.getsize(meta) / 2**20:.0f} MiB gzip)")
        done = subprocess.run([sys.executable, "-m", "benchmarks.convert_memory", "--child", folder,
                               "--k_core", str(args.k_core)], capture_output=True, text=True, check=False,
                              cwd=os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
        if done.returncode:
            print(done.stderr, file=sys.stderr)
            return done.returncode
        r = json.loads(done.stdout.strip().splitlines()[-1])
    print(f"converted {r['reviews']:,} reviews ({r['users']:,} users, {r['items']:,} items; {r['kept']:,} kept after "
          f"{args.k_core}-core) + metadata: {r['lines']:,} lines in {r['seconds']:.1f} s = "
          f"{r['lines'] / r['seconds']:,.0f} lines/s")
    print(f"peak RSS {r['peak_rss_mib']:,.0f} MiB, of which {r['rss_after_import_mib']:,.0f} MiB after importing "
          f"recbole_msl (RecBole, torch): {r['peak_rss_mib'] - r['rss_after_import_mib']:,.0f} MiB for the conversion "
          f"= {(r['peak_rss_mib'] - r['rss_after_import_mib']) * 2**20 / r['reviews']:,.0f} bytes per review")
    return 0


if __name__ == "__main__":
    sys.exit(main())
