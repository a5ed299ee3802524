"""MSL/BIGRec sliding-window splits (``train.csv``, ``valid.csv``, ``test.csv``, ``id2name4Rec.json``).

Each CSV row is one window: ``item_ids`` is a Python list literal holding the history, oldest first,
then the target. The split is the authors' and is kept as is, so the rows become RecBole *benchmark*
files (``<name>.train/.valid/.test.inter``). Without ``valid.csv`` the most recent fraction (by
timestamp) of the training windows becomes the validation file, as the shared amazon-books split was made.
"""

from __future__ import annotations

import ast
import csv
import json
import os
from array import array
from dataclasses import dataclass

import numpy as np

from ..errors import ConfigError
from ..files import write_atomic
from .domain import Domain
from .interactions import BadToken, Codes
from .options import Option
from .reading import Lines, require_file
from .report import ConversionReport, Step, count_shared, title_stats, write_report_json
from .titles import clean_title, raw_title
from .writing import staged_folder, time_strings, write_lines
from .yaml_config import benchmark_yaml, train_command

HELP = "MSL/BIGRec sliding-window CSVs (train/valid/test.csv + id2name4Rec.json) -> RecBole benchmark files"
INPUTS = [
    Option("folder", "folder with train.csv, valid.csv (optional), test.csv and id2name4Rec.json", required=True,
           metavar="DIR"),
    Option("train_file", "training windows, in --folder", default="train.csv", metavar="CSV"),
    Option("valid_file", "validation windows, in --folder; when absent they are carved from train", default="valid.csv",
           metavar="CSV"),
    Option("test_file", "test windows, in --folder (e.g. test_5000.csv)", default="test.csv", metavar="CSV"),
    Option("titles_file", "JSON object item id -> title, in --folder", default="id2name4Rec.json", metavar="JSON"),
    Option("valid_fraction", "without a valid file: the most recent fraction (by timestamp) of the training windows "
           "that becomes the validation file", kind="float", default=0.1, metavar="F"),
    Option("raw_titles", "keep titles as released (HTML entities and markup); only tabs, newlines and runs of "
           "whitespace are normalized", kind="flag", default=False),
]
SPLITS = ("train", "valid", "test")
_FIX = "rows need user_id, item_ids (a list literal: history then target) and timestamp"


def category(opts: dict) -> str:
    return os.path.basename(os.path.normpath(opts["folder"]))


@dataclass
class Windows:
    """Rows of one split: history ``items[offsets[k]:offsets[k + 1] - 1]``, target ``items[offsets[k + 1] - 1]``."""

    user: np.ndarray  # [rows] int32 user codes
    items: np.ndarray  # [sum of window lengths] int32 item codes
    offsets: np.ndarray  # [rows + 1] int64
    time: np.ndarray  # [rows] float64

    def __len__(self) -> int:
        return len(self.user)

    def take(self, rows: np.ndarray) -> Windows:
        """The selected rows (bool mask or indices), in that order."""
        rows = np.flatnonzero(rows) if rows.dtype == bool else rows
        starts = self.offsets[rows]  # [rows]
        lengths = self.offsets[rows + 1] - starts  # [rows]
        offsets = np.r_[0, np.cumsum(lengths)].astype(np.int64)  # [rows + 1]
        flat = np.repeat(starts - offsets[:-1], lengths) + np.arange(offsets[-1])  # [new flat] old positions
        return Windows(self.user[rows], self.items[flat], offsets, self.time[rows])

    def rows_with_any(self, bad_item: np.ndarray) -> np.ndarray:
        """[rows] True where the window (history or target) holds an item flagged in ``bad_item``."""
        hit = bad_item[self.items].astype(np.int64)  # [flat]
        return np.add.reduceat(hit, self.offsets[:-1]) > 0 if len(self) else np.zeros(0, dtype=bool)


def _columns(lines: Lines, header: list[str] | None) -> tuple[int, int, int]:
    if header is None:
        raise ConfigError(f"{lines.path} is empty; {_FIX}")
    names = [h.strip().lstrip("\ufeff").lower() for h in header]
    missing = [c for c in ("user_id", "item_ids", "timestamp") if c not in names]
    if missing:
        raise lines.error(f"has no column {missing[0]!r} (columns: {', '.join(header)})", _FIX)
    return names.index("user_id"), names.index("item_ids"), names.index("timestamp")


def read_windows(path: str, users: Codes, items: Codes, progress=None) -> Windows:
    """One split's CSV, streamed; ids are coded through the shared ``users``/``items`` tables."""
    lines = Lines(path, progress)
    reader = csv.reader(lines)
    user, flat, offsets, times = array("i"), array("i"), array("q", [0]), array("d")
    try:
        u, i, t = _columns(lines, next(reader, None))
        for row in reader:
            if not row:
                continue
            if len(row) <= max(u, i, t):
                raise lines.error(f"has {len(row)} fields, fewer than the header", _FIX)
            try:
                window = ast.literal_eval(row[i].strip())
                stamp = float(row[t])
            except (ValueError, SyntaxError, MemoryError, RecursionError):
                raise lines.error(f"item_ids {row[i][:40]!r} is not a list literal or timestamp {row[t]!r} is "
                                  f"not a number", _FIX) from None
            if not isinstance(window, (list, tuple)) or len(window) < 2:
                raise lines.error("item_ids must list at least one history item and the target", _FIX)
            try:
                user.append(users(row[u].strip()))
                flat.extend(items(str(x).strip()) for x in window)
            except BadToken as err:
                raise lines.error(str(err), "ids must be plain tokens") from None
            offsets.append(len(flat))
            times.append(stamp)
    except csv.Error as err:
        raise lines.error(f"is not valid CSV ({err})", _FIX) from None
    return Windows(np.frombuffer(user, dtype=np.int32), np.frombuffer(flat, dtype=np.int32),
                   np.frombuffer(offsets, dtype=np.int64), np.frombuffer(times, dtype=np.float64))


def carve_valid(train: Windows, fraction: float, path: str) -> tuple[Windows, Windows]:
    """(train, valid): the most recent ``fraction`` of the windows by timestamp (stable), both in file order."""
    if not 0 < fraction < 1:
        raise ConfigError(f"--valid_fraction must be between 0 and 1, not {fraction}; e.g. --valid_fraction=0.1")
    n_valid = int(len(train) * fraction)
    if len(train) >= 2:
        n_valid = min(max(n_valid, 1), len(train) - 1)
    if n_valid < 1:
        raise ConfigError(f"{path} has {len(train)} window(s): too few to carve a validation file; add valid.csv")
    order = np.argsort(train.time, kind="stable")
    is_valid = np.zeros(len(train), dtype=bool)
    is_valid[order[len(train) - n_valid:]] = True
    return train.take(~is_valid), train.take(is_valid)


def read_id2name(path: str, clean) -> dict[str, str]:
    """Item id -> cleaned title; the file is one JSON object (one short title per item, so read whole)."""
    try:
        with open(path, encoding="utf-8") as f:
            table = json.load(f)
    except (ValueError, UnicodeDecodeError) as err:
        raise ConfigError(f"{path} is not valid JSON ({str(err).splitlines()[0]}); it must map item id -> "
                          f"title") from None
    if not isinstance(table, dict):
        raise ConfigError(f"{path} must be a JSON object mapping item id -> title, not a {type(table).__name__}")
    return {str(k).strip(): clean(v) for k, v in table.items()}


def _window_lines(windows: Windows, user_tokens: list[str], item_tokens: list[str]):
    offsets = windows.offsets.tolist()
    flat = windows.items.tolist()
    for k, (u, t) in enumerate(zip(windows.user.tolist(), time_strings(windows.time))):
        window = [item_tokens[c] for c in flat[offsets[k]:offsets[k + 1]]]
        yield f"{user_tokens[u]}\t{' '.join(window[:-1])}\t{window[-1]}\t{t}\n"


def _counts(splits: dict[str, Windows]) -> tuple[int, int, int]:
    users = np.unique(np.concatenate([w.user for w in splits.values()]))
    items = np.unique(np.concatenate([w.items for w in splits.values()]))
    return len(users), len(items), sum(len(w) for w in splits.values())


def _sizes(splits: dict[str, Windows]) -> str:
    return " / ".join(f"{k} {len(w):,}" for k, w in splits.items())


def _read_splits(opts: dict, users: Codes, items: Codes, report: ConversionReport, progress) -> dict[str, Windows]:
    folder = opts["folder"]
    if not os.path.isdir(folder):
        raise ConfigError(f"folder {folder} does not exist; pass --folder with train.csv, test.csv and "
                          f"id2name4Rec.json")
    paths = {split: os.path.join(folder, opts[f"{split}_file"]) for split in SPLITS}
    for split in ("train", "test"):
        require_file(paths[split], f"{split} file", f"put {opts[f'{split}_file']} into {folder} or pass "
                                                    f"--{split}_file")
    splits = {split: read_windows(paths[split], users, items, progress)
              for split in SPLITS if split != "valid" or os.path.isfile(paths["valid"])}
    for split, windows in splits.items():
        if not len(windows):
            raise ConfigError(f"{paths[split]} has no windows; {_FIX}")
    report.lines_read = sum(len(w) for w in splits.values())
    report.steps.append(Step("read", *_counts(splits), note=_sizes(splits)))
    if "valid" in splits:
        report.notes.append(f"{paths['valid']} used as the validation split (--valid_fraction not applied)")
    else:
        train, valid = carve_valid(splits["train"], opts["valid_fraction"], paths["train"])
        splits = {"train": train, "valid": valid, "test": splits["test"]}
        report.steps.append(Step("carve valid", *_counts(splits),
                                 note=f"most recent {opts['valid_fraction']:g} of train: {_sizes(splits)}"))
    return splits


def convert(opts: dict, report: ConversionReport, target: str, domain: Domain, progress=None) -> None:
    """Read the three splits and the titles, drop windows with untitled items, write benchmark files."""
    titles_path = require_file(os.path.join(opts["folder"], opts["titles_file"]), "title file",
                               f"put {opts['titles_file']} (item id -> title) into {opts['folder']}")
    users, items = Codes(), Codes()
    splits = _read_splits(opts, users, items, report, progress)
    clean = raw_title if opts["raw_titles"] else clean_title
    id2name = read_id2name(titles_path, clean)
    item_tokens = items.tokens()
    titles = {code: id2name[token] for code, token in enumerate(item_tokens) if token in id2name}
    report.titles = title_stats(len(item_tokens), titles)
    if not opts["keep_untitled"]:
        untitled = np.array([not titles.get(code) for code in range(len(item_tokens))], dtype=bool)
        splits = {k: w.take(~w.rows_with_any(untitled)) for k, w in splits.items()}
        report.steps.append(Step("titles", *_counts(splits), note=f"drop windows with untitled items: "
                                                                  f"{_sizes(splits)}"))
        empty = [k for k, w in splits.items() if not len(w)]
        if empty:
            raise ConfigError(f"no {empty[0]} windows are left after dropping items without a title; pass "
                              f"--keep_untitled or complete {titles_path}")
    # the catalogue is the title file's (the authors' candidate set), then window items it lacks
    keep = opts["keep_untitled"]
    rows = [(token, title) for token, title in id2name.items() if title or keep]
    rows += [(token, "") for token in item_tokens if token not in id2name] if keep else []
    count_shared(report.titles, [title for _, title in rows])
    longest = max(int(np.diff(w.offsets).max()) - 1 for w in splits.values())
    _write(opts, report, target, domain, splits, users.tokens(), item_tokens, rows, longest)


def _write(opts, report, target, domain, splits, user_tokens, item_tokens, catalogue, longest) -> None:
    name, out_dir = report.name, os.path.dirname(target)
    files = {split: os.path.join(target, f"{name}.{split}.inter") for split in SPLITS}
    files.update(item=os.path.join(target, f"{name}.item"), yaml=os.path.join(target, f"{name}.yaml"),
                 report=os.path.join(target, f"{name}.convert.json"))
    report.files, report.train_command = files, train_command(out_dir, name, files["yaml"])
    with staged_folder(target, opts["overwrite"]) as staging:
        staged = {kind: os.path.join(staging, os.path.basename(path)) for kind, path in files.items()}
        header = "user_id:token\titem_id_list:token_seq\titem_id:token\ttimestamp:float"
        for split in SPLITS:
            write_lines(staged[split], header, _window_lines(splits[split], user_tokens, item_tokens))
        write_lines(staged["item"], "item_id:token\ttitle:token",
                    (f"{token}\t{title}\n" for token, title in catalogue))
        origin = f"sliding-window split from {os.path.abspath(opts['folder'])}"
        write_atomic(staged["yaml"], benchmark_yaml(name, origin, report.train_command, domain,
                                                    opts["keep_untitled"], longest))
        write_report_json(staged["report"], report, opts)
