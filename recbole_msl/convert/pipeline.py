"""``convert``: read a source, filter, and write RecBole atomic files plus a YAML, all or nothing."""

from __future__ import annotations

import os
import resource
import sys
import time
from types import ModuleType

import numpy as np

from ..errors import ConfigError
from ..files import write_atomic
from . import amazon2014, amazon2018, amazon2023, generic, sliding_window
from .domain import Domain, domain_for
from .filters import apply_filters
from .interactions import Interactions
from .options import FILTERS, OUTPUT, Option, resolve
from .report import ConversionReport, Step, count_shared, title_stats, write_report_json
from .titles import clean_title
from .writing import CHUNK, check_name, check_target, staged_folder, time_strings, write_lines
from .yaml_config import interactions_yaml, train_command

SOURCES: dict[str, ModuleType] = {"amazon2014": amazon2014, "amazon2018": amazon2018, "amazon2023": amazon2023,
                                  "generic": generic, "sliding-window": sliding_window}


def source_module(source: str) -> ModuleType:
    module = SOURCES.get(str(source).replace("_", "-"))
    if module is None:
        raise ConfigError(f"unknown source {source!r}; use one of: {', '.join(SOURCES)}")
    return module


def source_options(source: str) -> list[Option]:
    """Inputs of the source, then the filters (not for fixed splits), then the output options."""
    module = source_module(source)
    return module.INPUTS + ([] if module is sliding_window else FILTERS) + OUTPUT


def default_name(source: str, options: dict) -> str:
    """``amazon2018-video-games`` from meta_Video_Games.json.gz; a sliding-window folder's own name."""
    module = source_module(source)
    category = module.category(options)
    base = category if module is sliding_window else f"{source}-{category}"
    return "-".join(w for w in "".join(c if c.isalnum() else " " for c in base.lower()).split())


def peak_rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


def prompt_domain(module: ModuleType, opts: dict) -> Domain:
    return domain_for(opts["domain"] or module.category(opts), opts["domain_noun"], opts["domain_verb"],
                      opts["domain_singular"])


def _progress(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def _inter_lines(inter: Interactions):
    users, items = inter.user_tokens, inter.item_tokens
    for start in range(0, len(inter), CHUNK):
        part = slice(start, start + CHUNK)
        for u, i, t in zip(inter.user[part].tolist(), inter.item[part].tolist(), time_strings(inter.time[part])):
            yield f"{users[u]}\t{items[i]}\t{t}\n"


def _convert_interactions(module: ModuleType, opts: dict, report: ConversionReport, target: str,
                          progress) -> None:
    data = module.read(opts, clean_title, progress)
    inter, data.inter, report.lines_read = data.inter, None, data.lines  # the unsorted rows are freed once sorted
    report.time_unit = data.time_unit
    if not len(inter):  # an empty (or blank) file: say so, not "nothing left after the first filter"
        option = module.INPUTS[0].name
        what = {"reviews": "review file", "ratings": "ratings file"}.get(option, f"{option} file")
        raise ConfigError(f"{what} {opts[option]} is empty: it holds no interactions; check --{option} (download "
                          f"it again if it was cut short)")
    report.steps.append(Step("read", *inter.counts()))
    report.titles = title_stats(len(inter.item_tokens), data.titles)
    has_title = np.zeros(len(inter.item_tokens), dtype=bool)
    has_title[[code for code, title in data.titles.items() if title]] = True
    inter = apply_filters(inter.sorted_by_user_and_time(), has_title, opts, report.steps)
    items = np.unique(inter.item)  # codes in first-appearance order of the input
    item_titles = [data.titles.get(code, "") for code in items.tolist()]
    count_shared(report.titles, item_titles)

    name, out_dir = report.name, os.path.dirname(target)
    files = {kind: os.path.join(target, f"{name}.{kind}") for kind in ("inter", "item", "yaml")}
    files["report"] = os.path.join(target, f"{name}.convert.json")
    report.files, report.train_command = files, train_command(out_dir, name, files["yaml"])
    with staged_folder(target, opts["overwrite"]) as staging:
        staged = {kind: os.path.join(staging, os.path.basename(path)) for kind, path in files.items()}
        write_lines(staged["inter"], "user_id:token\titem_id:token\ttimestamp:float", _inter_lines(inter))
        write_lines(staged["item"], "item_id:token\ttitle:token",
                    (f"{inter.item_tokens[code]}\t{title}\n" for code, title in zip(items.tolist(), item_titles)))
        origin = f"{module.HELP.split(':')[0]} ({module.category(opts)})"
        write_atomic(staged["yaml"], interactions_yaml(name, origin, report.train_command,
                                                       prompt_domain(module, opts), opts["keep_untitled"]))
        write_report_json(staged["report"], report, opts)


def convert(source: str, out_dir: str, name: str | None = None, **options) -> ConversionReport:
    """Convert one raw data set to ``<out_dir>/<name>/`` (RecBole atomic files + YAML); see ``--help``.

    ``options`` are the command line's, by their ``dest`` names (``ratings=``, ``meta=``, ``k_core=`` ...).
    ``name`` defaults to the category (``amazon2018-books``). Raises ConfigError before writing anything
    when an input is missing or malformed or when the filters leave nothing.
    """
    started = time.perf_counter()
    module = source_module(source)
    opts = resolve(source, source_options(source), options)
    name = check_name(name or default_name(source, opts))
    target = check_target(out_dir, name, opts["overwrite"])
    report = ConversionReport(source=source, name=name, folder=target)
    progress = _progress if opts["progress"] else None
    if module is sliding_window:
        sliding_window.convert(opts, report, target, prompt_domain(module, opts), progress)
    else:
        _convert_interactions(module, opts, report, target, progress)
    report.seconds = time.perf_counter() - started
    report.peak_rss_mib = peak_rss_mib()
    return report
