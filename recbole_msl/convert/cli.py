"""Command line: one sub-command per source, its options built from the same declarations the API checks.

    python -m recbole_msl.convert amazon2018 --reviews Books_5.json.gz --meta meta_Books.json.gz --out dataset
    recbole-msl convert sliding-window --folder MSL/data/Toy --out dataset --name toys
"""

from __future__ import annotations

import argparse
import sys

from ..errors import ConfigError
from ..stopping import quiet_on_broken_pipe
from .options import FILTERS, Option
from .pipeline import SOURCES, convert, source_options
from .report import format_report

_FILTER_HELP = ("applied in this order, each reported with its counts: 1. rating, 2. time window,\n"
                "3. items without a usable title (see --keep_untitled), 4. duplicates, 5. k-core, 6. last N;\n"
                "each user's interactions are sorted by time first (ties keep the input order)")
_NOT_ON_CLI = {"progress"}  # the command line always reports progress on stderr


def _add(group, option: Option) -> None:
    flag = f"--{option.name}"
    if option.kind == "flag":
        group.add_argument(flag, action="store_true", help=option.help)
        return
    default = f" (default: {option.default})" if option.default is not None else ""
    group.add_argument(flag, default=None, metavar=option.metavar or option.name.upper(), choices=option.choices,
                       required=option.required, help=option.help + default)


def _source_parser(subparsers, source: str) -> None:
    module = SOURCES[source]
    sub = subparsers.add_parser(source, help=module.HELP, description=(module.__doc__ or "").strip(),
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    declared = source_options(source)
    inputs = sub.add_argument_group("inputs")
    for option in module.INPUTS:
        _add(inputs, option)
    if FILTERS[0] in declared:
        filters = sub.add_argument_group("filters", _FILTER_HELP)
        for option in FILTERS:
            _add(filters, option)
    output = sub.add_argument_group("output")
    output.add_argument("--out", required=True, metavar="DIR",
                        help="folder that receives <name>/ (pass it as --data_path when training)")
    output.add_argument("--name", default=None, help="data set name (default: from the file or folder names)")
    for option in declared:
        if option not in module.INPUTS and option not in FILTERS and option.name not in _NOT_ON_CLI:
            _add(output, option)


def build_parser(prog: str = "python -m recbole_msl.convert") -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog=prog, description="Convert a raw data set to RecBole atomic files "
                                     "plus a YAML that trains LLMMSL (or any RecBole model) on them.")
    subparsers = parser.add_subparsers(dest="source", metavar="SOURCE", title="sources")
    for source in SOURCES:
        _source_parser(subparsers, source)
    return parser


def main(argv: list[str] | None = None, prog: str = "python -m recbole_msl.convert") -> int:
    """Run one conversion; 0 on success, 2 with one ``error: ...`` line on stderr for bad input (141, quietly,
    when the reader of the output went away: ``--help | head -1``)."""
    return quiet_on_broken_pipe(lambda: _main(argv, prog))


def _main(argv: list[str] | None, prog: str) -> int:
    parser = build_parser(prog)
    try:
        args = parser.parse_args(sys.argv[1:] if argv is None else list(argv))
    except SystemExit as done:  # --help, or argparse's own usage error
        return int(done.code or 0)
    if args.source is None:
        parser.print_help(sys.stderr)
        return 2
    options = {k: v for k, v in vars(args).items() if k not in ("source", "out", "name") and v is not None}
    try:
        report = convert(args.source, args.out, args.name, progress=True, **options)
    except ConfigError as err:
        print("error: " + " ".join(str(err).split("\n")), file=sys.stderr)
        return 2
    print(format_report(report))
    return 0
