"""The ``recbole-msl`` command (also ``python -m recbole_msl``), and RecBole's flags for ``run_recbole_msl.py``.

    recbole-msl train --model=LLMMSL --dataset=ml-100k [--profile=cpu] [--config_files="a.yaml b.yaml"] [--key=value ...]
    recbole-msl compare --comparison=ml-100k-cpu [--seeds=1,2,3] [--reference=NAME] [--results_dir=DIR] [--report_only] [--key=value ...]
    recbole-msl compare --model=LLMMSL,SASRec,GRU4Rec --dataset=ml-100k
    recbole-msl recommend --checkpoint=saved/LLMMSL-... --history=1,50,172 [--topk=10] [--include_history]
    recbole-msl convert <source> ...            (raw Amazon / CSV / sliding-window files to RecBole atomic files)

``run_recbole_msl.py`` takes the same flags without a sub-command, as RecBole's ``run_recbole.py`` does
(``--comparison`` or a comma-separated ``--model`` make it a comparison).
"""

from __future__ import annotations

import argparse
import os
import sys

from . import quick_start  # run() looked up when called, as a test may stand in for it
from .compare.curve import curve_markdown, curve_report_only, run_curve
from .compare.lock import comparison_lock
from .compare.report_format import to_markdown
from .compare.runner import check_runs, run_comparison
from .compare.spec import check_reference, load_spec, parse_seeds, resolve_config_file, spec_from_models
from .compare.store import adopt_published_records, comparison_folder
from .convert.cli import main as convert_main
from .errors import ConfigError
from .quick_start import Recommender, RunInterrupted
from .recbole_seam.option_keys import (
    ALLOW_UNKNOWN,
    allows_unknown,
    check_option_keys,
    check_override_args,
    parse_overrides,
)
from .recbole_seam.property_files import profile_file, read_config_file
from .stopping import exit_code, quiet_on_broken_pipe, stop_on_sigterm
from .summary import run_summary

COMPARISON_FLAGS = ("--seeds", "--reference", "--results_dir", "--report_only")


def _parser(prog: str, description: str, comparison: bool, single: bool) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog=prog, description=description, allow_abbrev=False,
                                     formatter_class=argparse.RawDescriptionHelpFormatter,
                                     epilog="Any other RecBole or plugin option is given as --key=value "
                                            "(e.g. --epochs=3 --seed=7 --learning_rate=1e-4); a key no "
                                            "configuration layer knows is refused (--allow_unknown_keys=True "
                                            "keeps custom keys).")
    parser.add_argument("--model", "-m", default="LLMMSL",
                        help="LLMMSL or any RecBole model (SASRec, GRU4Rec, ...)" + ("; A,B,C for several" if comparison
                                                                                   else ""))
    parser.add_argument("--dataset", "-d", default="ml-100k", help="data set name")
    parser.add_argument("--config_files", default=None,
                        help="space-separated YAML files, or names of shipped profiles (cpu, cpu-long, paper-gpu)")
    parser.add_argument("--profile", action="append", default=[], help="a shipped profile by name; repeatable")
    if single:
        parser.add_argument("--saved", default="true", help="save checkpoints and test the best one (true/false)")
    if comparison:
        parser.add_argument("--comparison", default=None,
                            help="comparison YAML, or the name of one shipped in properties/comparisons/")
        parser.add_argument("--seeds", default=None, help="comma-separated seeds, e.g. 1,2,3")
        parser.add_argument("--reference", default=None, help="the run that gains are measured against")
        parser.add_argument("--results_dir", default=None, help="parent folder of the results (default results/)")
        parser.add_argument("--report_only", action="store_true",
                            help="write the report from the runs finished so far and run nothing (safe while the "
                                 "comparison runs in another shell)")
    return parser


def _config_files(args) -> list[str] | None:
    files = (args.config_files.split() if args.config_files else []) + [profile_file(p) for p in args.profile]
    return files or None


def _train(argv: list[str], prog: str) -> int:
    args, extra = _parser(prog, "Train and test one model (LLMMSL or any RecBole model).", False, True) \
        .parse_known_args(argv)
    given = [a for a in extra if a.split("=")[0] in COMPARISON_FLAGS + ("--comparison",)]
    if given or "," in args.model:
        raise ConfigError(f"{(given or ['--model=A,B'])[0].split('=')[0]} is for comparisons; "
                          f"use `recbole-msl compare` (or run_recbole_msl.py with --comparison)")
    saved = str(args.saved).lower() not in ("false", "0", "no")
    result = quick_start.run(args.model, args.dataset, config_file_list=_config_files(args), saved=saved,
                             cmd_args=extra)
    if os.environ.get("RANK", "0") == "0":  # under torchrun every rank has the result; rank 0 reports it
        print(run_summary(result))
    return 0


def _compare(argv: list[str], prog: str) -> int:
    args, extra = _parser(prog, "Several models or variants, one report with paired tests.", True, False) \
        .parse_known_args(argv)
    overrides = parse_overrides(extra)  # their keys are checked with each run's own (_check_spec_keys)
    seed_override = [a for a in extra if a.startswith("--seed=")]
    if seed_override and args.seeds is not None:
        raise ConfigError("give either --seeds (comparisons) or --seed, not both")
    given = args.seeds if args.seeds is not None else (overrides["seed"] if seed_override else None)
    seeds = parse_seeds(given) if given is not None else None  # --seeds= (empty) is refused, not ignored
    extra = [a for a in extra if not a.startswith("--seed=")]
    files = _config_files(args) or []
    if args.comparison:
        if "," in args.model:
            raise ConfigError("give either --comparison or a list of models in --model, not both")
        spec = load_spec(args.comparison)
        spec.seeds = seeds or spec.seeds
        spec.reference = args.reference or spec.reference
        spec.dataset = args.dataset if any(a.startswith(("--dataset", "-d")) for a in argv) else spec.dataset
        for run in spec.runs:  # --config_files apply to every run, after the comparison's own files
            run.config_files += [resolve_config_file(p, None) for p in files]
        check_reference(spec)
    else:
        spec = spec_from_models(args.model, args.dataset, files, seeds, args.reference)
    _check_spec_keys(spec, overrides)
    if args.report_only:  # a fresh clone: the committed records of a shipped comparison
        adopt_published_records(comparison_folder(args.results_dir or spec.results_dir, spec.name), spec.name)
    try:
        if spec.curve:
            if args.report_only:  # records only: nothing trains
                report = curve_report_only(spec, cmd_args=extra, results_dir=args.results_dir)
            else:
                check_runs(spec, extra)  # every run before the first trains
                with comparison_lock(comparison_folder(args.results_dir or spec.results_dir, spec.name), spec.name):
                    report = run_curve(spec, cmd_args=extra, results_dir=args.results_dir)
            print(curve_markdown(report))
            for kind, path in report["files"].items():
                print(f"{kind:>8}: {path}")
            return 0
        report = run_comparison(spec, cmd_args=extra, results_dir=args.results_dir, report_only=args.report_only)
    except (KeyboardInterrupt, RunInterrupted):
        print("\ninterrupted; run the same command again to continue: finished runs are read back and an "
              "LLM run continues after its last finished epoch", file=sys.stderr)
        return exit_code()
    print(to_markdown(report))
    for kind, path in report["files"].items():
        print(f"{kind:>8}: {path}")
    if not any(run.get("test") for run in report["runs"]) and not args.report_only:
        raise ConfigError("every run of the comparison failed; see the Status column above")
    return 0


def _check_spec_keys(spec, overrides: dict) -> None:
    """The command line's overrides and every run's config files and config hold only keys some configuration
    layer knows (or one of them sets allow_unknown_keys): checked before the first run starts, since otherwise
    each run would fail on its own, or (before this check) ignore the key."""
    for run in spec.runs:
        files = {path: read_config_file(path) for path in run.config_files}
        if any(allows_unknown(layer.get(ALLOW_UNKNOWN, False)) for layer in [overrides, *files.values(), run.config]):
            continue
        check_option_keys(overrides)
        for path, loaded in files.items():
            check_option_keys(loaded, f" in config file {path}", "yaml")
        origin = f" of {spec.source}" if spec.source else ""
        check_option_keys(run.config, f" in the config of run {run.name}{origin}", "yaml")


def _positive_topk(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"--topk must be a positive integer, not {text!r}") from None
    if value <= 0:
        raise argparse.ArgumentTypeError(f"--topk must be a positive integer, not {value}")
    return value


def _recommend(argv: list[str], prog: str) -> int:
    parser = OneLineErrorParser(prog=prog, allow_abbrev=False,
                                     description="Top-k new items for a history, from a saved LLMMSL checkpoint.")
    parser.add_argument("--checkpoint", required=True, help="folder saved by a training run (saved/LLMMSL-...)")
    parser.add_argument("--history", required=True,
                        help="comma-separated item ids of the data set's .item file, oldest first")
    parser.add_argument("--topk", type=_positive_topk, default=10, help="how many items (at most num_beams)")
    parser.add_argument("--include_history", action="store_true",
                        help="also recommend items of the history (excluded by default)")
    args, extra = parser.parse_known_args(argv)
    # a typo (--top_k=2) would otherwise be a config override nothing reads; this sub-command's flags count as known
    own = [a.dest for a in parser._actions if a.option_strings and a.dest != "help"]
    overrides = check_override_args(extra, extra_known=own)
    history = [h.strip() for h in args.history.split(",") if h.strip()]
    recommender = Recommender(args.checkpoint, overrides)
    recommender.check_topk(args.topk, history, not args.include_history, cli=True)  # the fix names these flags
    for rank, (item, title, score) in enumerate(
            recommender.recommend(history, args.topk, exclude_history=not args.include_history), 1):
        print(f"{rank:>3}  {item:>8}  {score:9.4f}  {title}")
    return 0


class OneLineErrorParser(argparse.ArgumentParser):
    """argparse with its usage errors as our one-line ConfigError (argparse's own way: overriding ``error``)."""

    def error(self, message):
        raise ConfigError(f"{message}; see {self.prog} --help")


def _convert(argv: list[str], prog: str) -> int:
    return convert_main(argv, prog=prog)


SUBCOMMANDS = {"train": _train, "compare": _compare, "recommend": _recommend, "convert": _convert}


def _recbole_style(argv: list[str], prog: str) -> int:
    """``run_recbole_msl.py`` without a sub-command: a comparison if asked for one, else one training run."""
    comparison = any(a.split("=")[0] in COMPARISON_FLAGS + ("--comparison",) for a in argv) or any(
        "," in a for a in argv if a.startswith(("--model=", "-m=")))
    return (_compare if comparison else _train)(argv, prog)


def main(argv=None, prog: str = "recbole-msl") -> int:
    """Run the command; return the exit code (0 ok, 2 a one-line error, 130 Ctrl-C, 143 SIGTERM, 141 quietly when
    the reader of the output went away, as in ``recbole-msl --help | head -1``)."""
    return quiet_on_broken_pipe(lambda: _main(argv, prog))


def _main(argv, prog: str) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    try:
        with stop_on_sigterm():
            if argv and argv[0] in SUBCOMMANDS:
                return SUBCOMMANDS[argv[0]](argv[1:], f"{prog} {argv[0]}")
            if prog == "recbole-msl" and (not argv or argv[0] in ("-h", "--help")):
                print(__doc__.strip())
                return 0 if argv else 2
            return _recbole_style(argv, prog)
    except ConfigError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    except RunInterrupted as stop:
        again = " ".join([prog, *argv, f"--resume={stop.resume_folder}"]) if stop.resume_folder else None
        print(f"\ninterrupted; continue with: {again}" if again else
              "\ninterrupted; nothing to resume (an LLMMSL run resumes once an epoch has finished), start again",
              file=sys.stderr)
        return exit_code()
    except KeyboardInterrupt:  # outside fit and test: loading data, building the model, writing results
        print("\ninterrupted outside training (loading, setup or writing results); nothing to resume, start again",
              file=sys.stderr)
        return exit_code()


if __name__ == "__main__":
    sys.exit(main())
