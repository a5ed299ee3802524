"""The published files name no folder of the machine they were made on.

Run records, reports and command outputs under ``docs/`` are read by people on other machines: a path such as
``/work/main/results/...`` or ``/home/<user>/...`` tells them nothing and leaks the machine's layout. Records
and reports are written with paths relative to the project root (:func:`recbole_msl.compare.portable.portable_paths`);
this test fails when a committed file holds an absolute path under a machine's work, home or temporary folders.
"""

from __future__ import annotations

import os
import re

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TEXT = (".json", ".md", ".txt", ".csv", ".yaml", ".yml")
# an absolute path where a path starts (not inside a URL or a longer word): /work/..., /root/..., /home/...,
# /tmp/..., /Users/..., /mnt/..., /scratch/...; a user-facing example such as /models/Meta-Llama-3-8B passes
MACHINE_PATH = re.compile(r"(?<![\w.~/:-])/(?:work|root|home|tmp|Users|mnt|scratch)/[\w.-]")


def published_files() -> list[str]:
    found = []
    for folder, _, names in os.walk(os.path.join(ROOT, "docs")):
        found += [os.path.join(folder, name) for name in names if name.endswith(TEXT)]
    return sorted(found) + [os.path.join(ROOT, "README.md")]


def machine_paths(text: str) -> list[str]:
    return [text[max(0, m.start() - 30):m.end() + 40].replace("\n", " ") for m in MACHINE_PATH.finditer(text)]


def test_the_pattern_finds_machine_paths_and_spares_urls_and_examples():
    assert machine_paths('"log_file": "/work/main/log/x.log"') and machine_paths("saved to /tmp/gpu-check-1/x")
    assert machine_paths("--out=/home/me/x.json") and machine_paths("(/root/.cache/huggingface)")
    assert not machine_paths("https://example.org/home/page and --llm_path=/models/Meta-Llama-3-8B")
    assert not machine_paths("results/ml-100k-hybrid/runs/lml--seed2022.json and ../shared/datasets")


@pytest.mark.parametrize("path", published_files(), ids=lambda p: os.path.relpath(p, ROOT))
def test_no_published_file_holds_an_absolute_machine_path(path):
    with open(path, encoding="utf-8", errors="replace") as f:
        found = machine_paths(f.read())
    assert not found, (f"{os.path.relpath(path, ROOT)} holds {len(found)} absolute machine path(s), e.g. "
                       f"{found[0]!r}: write paths relative to the project root")
