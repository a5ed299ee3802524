"""Command line: RecBole's run_recbole flags, plus a ``recommend`` subcommand for saved checkpoints.

    python run_recbole_msl.py --model=LLMMSL --dataset=ml-100k [--config_files="a.yaml b.yaml"] [--key=value ...]
    python run_recbole_msl.py recommend --checkpoint=saved/LLMMSL-... --history=1,50,172 [--topk=10]
    python run_recbole_msl.py --model=LLMMSL,SASRec,GRU4Rec --dataset=ml-100k [--seeds=1,2,3] [--reference=SASRec]
    python run_recbole_msl.py --comparison=ml-100k-cpu [--seeds=1,2,3] [--key=value ...]
"""

from __future__ import annotations

import argparse
import json
import os
import sys

from .errors import ConfigError


def _train_parser():
    parser = argparse.ArgumentParser(prog="run_recbole_msl.py", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", "-m", default="LLMMSL", help="LLMMSL or any RecBole model (SASRec, GRU4Rec, ...)")
    parser.add_argument("--dataset", "-d", default="ml-100k", help="data set name")
    parser.add_argument("--config_files", default=None, help="space-separated YAML files")
    parser.add_argument("--saved", default="true", help="save checkpoints and test the best one (true/false)")
    parser.add_argument("--comparison", default=None,
                        help="comparison YAML, or the name of one in properties/comparisons/")
    parser.add_argument("--seeds", default=None, help="comparisons: comma-separated seeds, e.g. 1,2,3")
    parser.add_argument("--reference", default=None, help="comparisons: the run that gains are measured against")
    parser.add_argument("--results_dir", default=None, help="comparisons: parent folder of the results (results/)")
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


def _compare(args, extra):
    from .compare.report import to_markdown
    from .compare.runner import run_comparison
    from .compare.spec import check_reference, load_spec, parse_seeds, resolve_config_file, spec_from_models
    from .config import parse_overrides

    overrides = parse_overrides(extra)
    seed_override = [a for a in extra if a.startswith("--seed=")]
    if seed_override and args.seeds:
        raise ConfigError("give either --seeds (comparisons) or --seed, not both")
    seeds = parse_seeds(args.seeds or overrides["seed"]) if (args.seeds or seed_override) else None
    extra = [a for a in extra if not a.startswith("--seed=")]
    files = args.config_files.split() if args.config_files else []
    if args.comparison:
        if "," in args.model:
            raise ConfigError("give either --comparison or a list of models in --model, not both")
        spec = load_spec(args.comparison)
        spec.seeds = seeds or spec.seeds
        spec.reference = args.reference or spec.reference
        spec.dataset = args.dataset if args.dataset_given else spec.dataset
        for run in spec.runs:  # --config_files apply to every run, after the comparison's own files
            run.config_files += [resolve_config_file(p, None) for p in files]
        check_reference(spec)
    else:
        spec = spec_from_models(args.model, args.dataset, files, seeds, args.reference)
    report = run_comparison(spec, cmd_args=extra, results_dir=args.results_dir)
    print(to_markdown(report))
    for kind, path in report["files"].items():
        print(f"{kind:>8}: {path}")
    if not any(run.get("test") for run in report["runs"]):
        raise ConfigError("every run of the comparison failed; see the Status column above")


def _train(argv):
    from .quick_start import run

    args, extra = _train_parser().parse_known_args(argv)
    args.dataset_given = any(a.startswith(("--dataset", "-d")) for a in argv)
    if args.comparison or "," in args.model:
        return _compare(args, extra)
    if args.seeds or args.reference or args.results_dir:
        raise ConfigError("--seeds, --reference and --results_dir are for comparisons; "
                          "list several models (--model=A,B) or pass --comparison")
    files = args.config_files.split() if args.config_files else None
    saved = str(args.saved).lower() not in ("false", "0", "no")
    result = run(args.model, args.dataset, config_file_list=files, saved=saved, cmd_args=extra)
    if os.environ.get("RANK", "0") != "0":  # under torchrun every rank has the same result; rank 0 reports it
        return
    print(json.dumps({"model": args.model, "dataset": args.dataset,
                      "best_valid_result": dict(result["best_valid_result"] or {}),
                      "test_result": dict(result["test_result"] or {}),
                      "timings": result["timings"],
                      "result_file": result["result_file"]}, indent=1))


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
