"""What a comparison runs: named runs (model + overrides) on one data set, repeated over seeds.

A comparison comes from a YAML file (``properties/comparisons/*.yaml``) or from the
compact command line ``--model=LLMMSL,SASRec,GRU4Rec``. Configuration layers, lowest
first: RecBole's and the plugin's property files, the comparison's shared
``config_files``, the run's ``profiles`` and ``config_files``, the comparison's shared
``config``, the run's ``config``, then ``--key=value`` on the command line, which
applies to every run (RecBole's own precedence: the command line wins).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import re

from ..errors import ConfigError
from ..model.options import decoding_keys
from ..recbole_seam.property_files import PROPERTIES_DIR, profile_file
from ..yaml_files import load_yaml
from .store import PUBLISHED_RESULTS

_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.+-]*$")
_SPEC_KEYS = {"name", "dataset", "seeds", "reference", "pairs", "report_metrics", "config", "config_files", "runs",
              "results_dir", "description", "curve", "beside", "stop_when_flat_from", "adopt",
              "curve_adapters"}
_RUN_KEYS = {"name", "model", "config", "config_files", "profiles", "seeds", "cost"}


@dataclasses.dataclass
class RunSpec:
    name: str
    model: str
    config_files: list[str]
    config: dict
    seeds: list[int] | None = None  # a subset of the comparison's seeds; None: all of them
    cost: float | None = None  # a curve run's step time over the reference setting's (compare.curve_schedule)

    def runs_with(self, seed: int) -> bool:
        return self.seeds is None or seed in self.seeds

    def signature(self, dataset: str, seed: int, cmd_args: list[str]) -> str:
        """Changes whenever anything that shapes this run's result changes (files by content)."""
        contents = []
        for path in self.config_files:
            with open(path, "rb") as f:
                contents.append(hashlib.sha1(f.read()).hexdigest())
        blob = json.dumps([self.model, dataset, seed, contents, self.config, sorted(cmd_args)],
                          sort_keys=True, default=str)
        return hashlib.sha1(blob.encode("utf-8")).hexdigest()[:16]

    def training_signature(self, dataset: str, seed: int, cmd_args: list[str]) -> str | None:
        """The signature without the keys that only choose how titles are decoded (``assistant``, its weight and
        temperature, ``num_beams``, ...): runs with equal ones train the same adapter, so the later ones evaluate
        the first one's. None for a run with no LLM term (``llm_weight: 0``), whose adapter is never trained."""
        if self.config.get("llm_weight") == 0:
            return None
        return self.signature_without(decoding_keys(), dataset, seed, cmd_args)

    def signature_without(self, keys, dataset: str, seed: int, cmd_args: list[str]) -> str:
        """The signature of this run's settings less ``keys``: what a result that ignores those keys depends on."""
        kept = {k: v for k, v in self.config.items() if k not in set(keys)}
        return dataclasses.replace(self, config=kept).signature(dataset, seed, cmd_args)


@dataclasses.dataclass
class ComparisonSpec:
    name: str
    dataset: str
    runs: list[RunSpec]
    seeds: list[int]
    reference: str | None = None
    report_metrics: list[str] | None = None
    results_dir: str = "results"
    source: str | None = None  # the YAML it came from, if any
    curve: list[int] | None = None  # a learning curve: validate LLM runs after these numbers of sequences (0: untrained)
    pairs: list[tuple[str, str]] = dataclasses.field(default_factory=list)  # tested pairs besides the reference
    beside: list[str] = dataclasses.field(default_factory=list)  # published curves drawn beside this one (CPU chart)
    stop_when_flat_from: int | None = None  # a curve point: from there, stop a run once validation stops rising
    adopt: list[str] = dataclasses.field(default_factory=list)  # published comparisons whose equal runs are read
    curve_adapters: list[str] = dataclasses.field(default_factory=list)  # curves whose same training is evaluated

    def run_names(self) -> list[str]:
        return [r.name for r in self.runs]

    def scheduled(self) -> list[tuple[int, RunSpec]]:
        """(seed, run) in the order a comparison runs them: seed by seed, each run that runs with that seed."""
        return [(seed, run) for seed in self.seeds for run in self.runs if run.runs_with(seed)]


def parse_seeds(text) -> list[int]:
    """``"1,2,3"`` or ``[1, 2, 3]`` to a list of distinct ints."""
    items = text if isinstance(text, (list, tuple)) else str(text).split(",")
    try:
        seeds = [int(str(s).strip()) for s in items if str(s).strip()]
    except ValueError:
        raise ConfigError(f"seeds must be integers, e.g. --seeds=1,2,3, not {text!r}") from None
    if not seeds or len(set(seeds)) != len(seeds):
        raise ConfigError(f"seeds must be a non-empty list of distinct integers, e.g. --seeds=1,2,3, not {text!r}")
    return seeds


def resolve_config_file(path: str, base_dir: str | None) -> str:
    candidates = [path] if os.path.isabs(path) else (
        [os.path.join(base_dir, path)] if base_dir else []) + [path, os.path.join(os.path.dirname(PROPERTIES_DIR), path)]
    for candidate in candidates:
        if os.path.isfile(candidate):
            return os.path.abspath(candidate)
    raise ConfigError(f"config file {path} does not exist; give a path relative to the comparison file or the "
                      f"working directory")


def _as_list(value, what: str) -> list:
    if value is None:
        return []
    if isinstance(value, str):
        return value.split()
    if isinstance(value, list):
        return value
    raise ConfigError(f"{what} must be a list, not {value!r}")


def _as_dict(value, what: str) -> dict:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise ConfigError(f"{what} must be a mapping of option: value, not {value!r}")
    return dict(value)


def _check_names(runs: list[RunSpec]) -> None:
    seen = set()
    for run in runs:
        if not _NAME.match(run.name):
            raise ConfigError(f"run name {run.name!r} may hold only letters, digits and _.+-; rename it")
        if run.name in seen:
            raise ConfigError(f"two runs are named {run.name!r}; give each run its own name")
        seen.add(run.name)


def check_reference(spec: ComparisonSpec) -> None:
    if spec.reference is not None and spec.reference not in spec.run_names():
        raise ConfigError(f"reference run {spec.reference!r} is not among the runs "
                          f"({', '.join(spec.run_names())}); name one of them")


def comparison_file(name_or_path: str) -> str:
    """A YAML path as given, or the name of a shipped comparison (``properties/comparisons/<name>.yaml``)."""
    if os.path.isfile(name_or_path):
        return name_or_path
    shipped = os.path.join(PROPERTIES_DIR, "comparisons", f"{name_or_path}.yaml")
    if os.path.isfile(shipped):
        return shipped
    folder = os.path.join(PROPERTIES_DIR, "comparisons")
    known = sorted(f[:-5] for f in os.listdir(folder) if f.endswith(".yaml")) if os.path.isdir(folder) else []
    raise ConfigError(f"comparison {name_or_path!r} is neither a file nor a shipped comparison; "
                      f"use a YAML path or one of: {', '.join(known)}")


def load_spec(name_or_path: str) -> ComparisonSpec:
    """Read and check a comparison YAML."""
    path = comparison_file(name_or_path)
    raw = load_yaml(path, "comparison file")
    if not isinstance(raw, dict):
        raise ConfigError(f"comparison file {path} must be a mapping with 'dataset' and 'runs'")
    unknown = set(raw) - _SPEC_KEYS
    if unknown:
        raise ConfigError(f"comparison file {path}: unknown key {min(unknown)!r}; "
                          f"allowed: {', '.join(sorted(_SPEC_KEYS))}")
    if not raw.get("dataset") or not raw.get("runs"):
        raise ConfigError(f"comparison file {path} needs 'dataset' and a non-empty 'runs' list")
    base = os.path.dirname(os.path.abspath(path))
    shared_files = [resolve_config_file(p, base) for p in _as_list(raw.get("config_files"), "config_files")]
    shared = _as_dict(raw.get("config"), "config")
    runs = []
    for i, entry in enumerate(_as_list(raw["runs"], "runs")):
        if not isinstance(entry, dict) or "model" not in entry:
            raise ConfigError(f"comparison file {path}: run {i + 1} needs at least 'model' (and usually 'name')")
        unknown = set(entry) - _RUN_KEYS
        if unknown:
            raise ConfigError(f"comparison file {path}: run {i + 1} has unknown key {min(unknown)!r}; "
                              f"allowed: {', '.join(sorted(_RUN_KEYS))}")
        files = shared_files + [profile_file(p) for p in _as_list(entry.get("profiles"), "profiles")]
        files += [resolve_config_file(p, base) for p in _as_list(entry.get("config_files"), "config_files")]
        runs.append(RunSpec(name=str(entry.get("name") or entry["model"]), model=str(entry["model"]),
                            config_files=files, config={**shared, **_as_dict(entry.get("config"), "config")},
                            seeds=None if entry.get("seeds") is None else parse_seeds(entry["seeds"]),
                            cost=_cost(entry.get("cost"), raw.get("curve"), entry["model"], path, i)))
    _check_names(runs)
    curve = _curve_points(raw.get("curve"), path)
    spec = ComparisonSpec(
        name=str(raw.get("name") or os.path.splitext(os.path.basename(path))[0]),
        dataset=str(raw["dataset"]), runs=runs, seeds=parse_seeds(raw.get("seeds", [2020])),
        reference=None if raw.get("reference") is None else str(raw["reference"]),
        report_metrics=[str(m).lower() for m in _as_list(raw.get("report_metrics"), "report_metrics")] or None,
        results_dir=str(raw.get("results_dir") or "results"), source=os.path.abspath(path),
        curve=curve, pairs=_pairs(raw.get("pairs"), path),
        beside=[str(n) for n in _as_list(raw.get("beside"), "beside")],
        stop_when_flat_from=_flat_start(raw.get("stop_when_flat_from"), curve, path),
        adopt=[str(n) for n in _as_list(raw.get("adopt"), "adopt")],
        curve_adapters=[str(n) for n in _as_list(raw.get("curve_adapters"), "curve_adapters")])
    check_reference(spec)
    for name in spec.adopt:
        if spec.curve is not None:
            raise ConfigError(f"comparison file {path}: adopt is for comparisons that test; a learning curve "
                              f"draws published curves with beside instead")
        if not os.path.isdir(os.path.join(PUBLISHED_RESULTS, name, "runs")):
            raise ConfigError(f"comparison file {path}: adopt names {name}, which has no records in "
                              f"docs/results/{name}/runs/; name a comparison whose run records are committed there")
    for name in spec.curve_adapters:
        if spec.curve is not None or os.path.abspath(comparison_file(name)) == os.path.abspath(path):
            raise ConfigError(f"comparison file {path}: curve_adapters names learning curves for a comparison that "
                              f"tests (not itself, and not from a curve, whose runs share training already)")
        if load_spec(name).curve is None:
            raise ConfigError(f"comparison file {path}: curve_adapters names {name}, which is not a learning curve; "
                              f"name a comparison with a curve: key")
    for name in spec.beside:  # checked before anything runs, not after hours of training
        if not os.path.isfile(os.path.join(PUBLISHED_RESULTS, f"{name}.json")):
            raise ConfigError(f"comparison file {path}: beside names {name}, which has no report in docs/results/; "
                              f"name a learning-curve comparison whose report is committed there")
    names = set(spec.run_names())
    for pair in spec.pairs:
        unknown = [n for n in pair if n not in names]
        if unknown:
            raise ConfigError(f"comparison file {path}: pair {list(pair)} names no run {unknown[0]!r}; "
                              f"use run names: {', '.join(spec.run_names())}")
    return spec


def _pairs(value, path) -> list[tuple[str, str]]:
    """``pairs: [[run, other], ...]``: runs tested against each other besides the reference (a hybrid against
    its own LLM-only run), in the same Holm family."""
    pairs = []
    for entry in _as_list(value, "pairs"):
        if not (isinstance(entry, list) and len(entry) == 2 and entry[0] != entry[1]):
            raise ConfigError(f"comparison file {path}: each of pairs is [run, other run], not {entry!r}")
        pairs.append((str(entry[0]), str(entry[1])))
    return pairs


def _cost(value, curve, model, path, index: int) -> float | None:
    """A run's ``cost``: its step time over the reference setting's, for a settings search at equal CPU time."""
    if value is None:
        return None
    if curve is None or str(model).lower() != "llmmsl":  # the names is_plugin_model accepts
        raise ConfigError(f"comparison file {path}: run {index + 1} has cost, which only an LLMMSL run of a learning "
                          f"curve uses (remove cost, or add curve: [...])")
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 < value < float("inf"):
        raise ConfigError(f"comparison file {path}: run {index + 1} has cost {value!r}; give its step time over the "
                          f"reference setting's as a positive number (e.g. 1.38, from benchmarks/sequence_format.py)")
    return float(value)


def _flat_start(value, curve: list[int] | None, path) -> int | None:
    """``stop_when_flat_from``: one of the curve's positive points (where the every-pass validations begin)."""
    if value is None:
        return None
    if not curve or value not in [p for p in curve if p > 0]:
        raise ConfigError(f"comparison file {path}: stop_when_flat_from must be one of the curve's positive points "
                          f"({', '.join(str(p) for p in curve or [] if p > 0) or 'no curve given'}), not {value!r}")
    return int(value)


def _curve_points(value, path) -> list[int] | None:
    if value is None:
        return None
    if (not isinstance(value, list) or not all(isinstance(v, int) and not isinstance(v, bool) and v >= 0 for v in value)
            or not any(v > 0 for v in value)):
        raise ConfigError(f"comparison file {path}: curve must be a list of sequence counts with at least one "
                          f"positive (0 = the untrained model), e.g. [0, 256, 1024, 2048], not {value!r}")
    return sorted(set(value))


def spec_from_models(models: str, dataset: str, config_files: list[str] | None = None,
                     seeds: list[int] | None = None, reference: str | None = None) -> ComparisonSpec:
    """The compact form: ``--model=LLMMSL,SASRec,GRU4Rec``, one run per model, named after it."""
    names = [m.strip() for m in models.split(",") if m.strip()]
    if len(names) < 2:
        raise ConfigError("a comparison needs at least two models, e.g. --model=LLMMSL,SASRec")
    files = [resolve_config_file(p, None) for p in (config_files or [])]
    runs = [RunSpec(name=m, model=m, config_files=list(files), config={}) for m in names]
    _check_names(runs)
    spec = ComparisonSpec(name=f"{dataset}-{'-'.join(names)}", dataset=dataset, runs=runs,
                          seeds=seeds or [2020], reference=reference)
    check_reference(spec)
    return spec
