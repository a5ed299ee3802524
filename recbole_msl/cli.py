"""Command line: RecBole's run_recbole flags, plus a ``recommend`` subcommand for saved checkpoints.

    python run_recbole_msl.py --model=LLMMSL --dataset=ml-100k [--config_files="a.yaml b.yaml"] [--key=value ...]
    python run_recbole_msl.py recommend --checkpoint=saved/LLMMSL-... --history=1,50,172 [--topk=10]
"""

from __future__ import annotations

import argparse
import json
import sys

from .errors import ConfigError


def _train_parser():
    parser = argparse.ArgumentParser(prog="run_recbole_msl.py", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", "-m", default="LLMMSL", help="LLMMSL or any RecBole model (SASRec, GRU4Rec, ...)")
    parser.add_argument("--dataset", "-d", default="ml-100k", help="data set name")
    parser.add_argument("--config_files", default=None, help="space-separated YAML files")
    parser.add_argument("--saved", default="true", help="save checkpoints and test the best one (true/false)")
    return parser


def _recommend_parser():
    parser = argparse.ArgumentParser(prog="run_recbole_msl.py recommend",
                                     description="Top-k items for a history from a saved LLMMSL checkpoint.")
    parser.add_argument("--checkpoint", required=True, help="folder saved by a training run (saved/LLMMSL-...)")
    parser.add_argument("--history", required=True, help="comma-separated item ids, oldest first")
    parser.add_argument("--topk", type=int, default=10)
    return parser


def _recommend(argv):
    from .quick_start import recommend

    args, extra = _recommend_parser().parse_known_args(argv)
    from .config import parse_overrides

    history = [h.strip() for h in args.history.split(",") if h.strip()]
    for rank, (item, title, score) in enumerate(recommend(args.checkpoint, history, args.topk,
                                                          parse_overrides(extra)), 1):
        print(f"{rank:>3}  {item:>8}  {score:9.4f}  {title}")


def _train(argv):
    from .quick_start import run

    args, extra = _train_parser().parse_known_args(argv)
    files = args.config_files.split() if args.config_files else None
    saved = str(args.saved).lower() not in ("false", "0", "no")
    result = run(args.model, args.dataset, config_file_list=files, saved=saved, cmd_args=extra)
    print(json.dumps({"model": args.model, "dataset": args.dataset,
                      "best_valid_result": dict(result["best_valid_result"] or {}),
                      "test_result": dict(result["test_result"] or {}),
                      "timings": result["timings"],
                      **({"tau_trace": result["tau_trace"]} if "tau_trace" in result else {})}, indent=1))


def main(argv=None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    try:
        if argv and argv[0] == "recommend":
            _recommend(argv[1:])
        else:
            _train(argv)
    except ConfigError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    return 0
