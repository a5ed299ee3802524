"""What a conversion did, as a dataclass for code and as a few lines for people."""

from __future__ import annotations

import dataclasses
import json
from collections import Counter
from dataclasses import dataclass, field

from ..files import write_atomic


@dataclass
class Step:
    """Counts after one processing step (``read`` first); ``note`` says what the step was."""

    name: str
    users: int
    items: int
    interactions: int
    note: str = ""


@dataclass
class TitleStats:
    """Title coverage of the items as read, and titles shared by several items in the output."""

    items: int = 0  # items read
    titled: int = 0  # items with a usable title after cleaning
    no_row: int = 0  # items with no row in the title file
    empty: int = 0  # items whose row has no title, or one that is empty after cleaning
    shared_titles: int = 0  # distinct titles held by two or more output items (all kept)
    items_sharing: int = 0  # output items whose title another output item has too

    @property
    def coverage(self) -> float:
        return self.titled / self.items if self.items else 0.0


@dataclass
class ConversionReport:
    source: str
    name: str
    folder: str  # <out>/<name>
    files: dict[str, str] = field(default_factory=dict)  # kind (inter, item, yaml, ...) -> path
    steps: list[Step] = field(default_factory=list)
    titles: TitleStats = field(default_factory=TitleStats)
    lines_read: int = 0
    seconds: float = 0.0
    peak_rss_mib: float = 0.0
    train_command: str = ""
    notes: list[str] = field(default_factory=list)
    time_unit: str = ""  # how the timestamps were read: "milliseconds (every value >= 1e11), written as ..."


def _cell(before: int | None, after: int) -> str:
    return f"{after:,}" if before is None or before == after else f"{before:,} -> {after:,}"


def _table(steps: list[Step]) -> list[str]:
    """One row per step, each count as ``before -> after`` where the step changed it."""
    rows = [("step", "users", "items", "interactions", "")]
    for k, step in enumerate(steps):
        prev = steps[k - 1] if k else None
        rows.append((step.name, _cell(prev and prev.users, step.users), _cell(prev and prev.items, step.items),
                     _cell(prev and prev.interactions, step.interactions), step.note))
    widths = [max(len(r[c]) for r in rows) for c in range(4)]
    return [f"  {r[0]:<{widths[0]}}  {r[1]:>{widths[1]}}  {r[2]:>{widths[2]}}  {r[3]:>{widths[3]}}  {r[4]}".rstrip()
            for r in rows]


def format_report(report: ConversionReport) -> str:
    """The counts per step, title coverage, where the files went and the command to train on them."""
    t = report.titles
    head = (f"converted {report.source} -> {report.folder} ({report.lines_read:,} lines in {report.seconds:.1f} s, "
            f"peak RSS {report.peak_rss_mib:,.0f} MiB)")
    lines = [head, *_table(report.steps)]
    if report.time_unit:
        lines.append(f"timestamps: {report.time_unit}")
    lines.append(f"titles: {t.titled:,} of {t.items:,} items read have one ({100 * t.coverage:.1f} %); "
                 f"{t.no_row:,} had no title row, {t.empty:,} an empty or missing title")
    if t.shared_titles:
        lines.append(f"shared titles: {t.shared_titles:,} titles are held by {t.items_sharing:,} items (all kept)")
    lines += [f"note: {n}" for n in report.notes]
    lines += [f"{kind:>6}: {path}" for kind, path in report.files.items()]
    lines.append(f"train: {report.train_command}")
    return "\n".join(lines)


def title_stats(n_items: int, titles: dict) -> TitleStats:
    """Coverage of ``titles`` (item code -> cleaned title, "" for an empty one) over ``n_items`` items."""
    titled = sum(1 for t in titles.values() if t)
    return TitleStats(items=n_items, titled=titled, no_row=n_items - len(titles), empty=len(titles) - titled)


def count_shared(stats: TitleStats, titles) -> None:
    """Titles (non-empty) held by two or more of the output items."""
    counts = Counter(t for t in titles if t)
    shared = [c for c in counts.values() if c > 1]
    stats.shared_titles, stats.items_sharing = len(shared), sum(shared)


def write_report_json(path: str, report: ConversionReport, opts: dict) -> None:
    """The options and counts next to the files, so a folder says how it was made."""
    record = {"options": {k: v for k, v in opts.items() if k not in ("overwrite", "progress")},
              **dataclasses.asdict(report)}
    for key in ("seconds", "peak_rss_mib"):  # not known yet, and machine-dependent
        record.pop(key)
    write_atomic(path, json.dumps(record, indent=1, default=str) + "\n")
