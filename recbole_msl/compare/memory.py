"""Peak memory of one run inside a longer process.

On Linux, writing 5 to ``/proc/self/clear_refs`` resets the process's peak resident
set size (VmHWM), so each run of a comparison gets its own peak; elsewhere the
process-lifetime peak from ``getrusage`` is reported (an upper bound). CUDA peaks
come from torch's allocator statistics.
"""

from __future__ import annotations

import resource
import sys

import torch


def _reset_rss_peak() -> bool:
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


def _rss_peak_mb() -> float:
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / (1024 * 1024) if sys.platform == "darwin" else peak / 1024


class PeakMemory:
    """``with PeakMemory() as peak: ...``, then ``peak.rss_mb`` and ``peak.cuda_mb`` (None without CUDA)."""

    def __enter__(self):
        self.per_run = _reset_rss_peak()
        if torch.cuda.is_available():
            torch.cuda.reset_peak_memory_stats()
        self.rss_mb, self.cuda_mb = None, None
        return self

    def __exit__(self, *exc):
        self.rss_mb = round(_rss_peak_mb(), 1)
        if torch.cuda.is_available():
            self.cuda_mb = round(torch.cuda.max_memory_allocated() / 2**20, 1)
        return False
