"""Command-line overrides and the unknown-key check: a key no configuration layer knows stops the run with one
line naming the closest known ones, unless ``allow_unknown_keys`` is set."""

from __future__ import annotations

import difflib
import functools
import glob
import os
import re

import recbole
from recbole.utils import argument_list

from ..errors import ConfigError, UnknownOptionError
from .property_files import _HERE, PROPERTIES_DIR, read_config_file


def parse_overrides(args: list[str]) -> dict[str, str]:
    """``--key=value`` strings to a dict of raw strings (RecBole converts the types)."""
    overrides = {}
    for arg in args:
        if not arg.startswith("--") or "=" not in arg:
            raise ConfigError(f"cannot read argument '{arg}'; write overrides as --key=value")
        key, value = arg[2:].split("=", 1)
        overrides[key] = "None" if value.strip() == "~" else value  # YAML's null, as in the property files
    return overrides


ALLOW_UNKNOWN = "allow_unknown_keys"  # the escape hatch: keys nothing here knows are kept (custom code reads them)
# Keys RecBole or the plugin read in code: config["key"] / config.get("key") (and the plugin's final[...] dict)
_READ_IN_CODE = re.compile(r"""\b(?:config|final_config_dict|final)\s*(?:\[\s*|\.get\(\s*)["']([A-Za-z_]\w*)["']""")
# RecBole's download tables map data set names to URLs; their keys are no options
_NOT_OPTION_FILES = {"url.yaml", "kg_url.yaml"}


def _yaml_keys(path: str) -> set[str]:
    """The top-level keys of a shipped YAML file; none from a file that is no mapping."""
    try:
        return {str(k) for k in read_config_file(path)}
    except (ConfigError, OSError):
        return set()


@functools.lru_cache(maxsize=1)
def known_option_keys() -> frozenset[str]:
    """Every key some configuration layer knows, for every model and data set (a comparison mixes models):
    RecBole's argument lists and all its property YAMLs (overall, every model, every data set, the quick-start
    files), the plugin's YAMLs (overall, models, data sets, profiles) and the keys RecBole's and the plugin's
    code read (``config["..."]``). About 40 ms once per process."""
    keys = {ALLOW_UNKNOWN, "model", "dataset"} | recbole_general_keys()
    recbole_dir = os.path.dirname(recbole.__file__)
    for folder in (os.path.join(recbole_dir, "properties"), PROPERTIES_DIR):
        for path in glob.glob(os.path.join(folder, "**", "*.yaml"), recursive=True):
            inside = os.path.relpath(path, folder).split(os.sep)
            if inside[0] != "comparisons" and inside[-1] not in _NOT_OPTION_FILES:  # comparison specs: own schema
                keys |= _yaml_keys(path)
    for folder in (recbole_dir, _HERE):
        for path in glob.glob(os.path.join(folder, "**", "*.py"), recursive=True):
            keys |= _keys_read_in(path)
    return frozenset(keys)


@functools.cache
def recbole_model_keys(name: str) -> frozenset[str]:
    """The keys of RecBole model ``name``'s own property file (empty for a model without one)."""
    return frozenset(_yaml_keys(os.path.join(os.path.dirname(recbole.__file__), "properties", "model", f"{name}.yaml")))


@functools.lru_cache(maxsize=1)
def recbole_general_keys() -> frozenset[str]:
    """Keys every RecBole model reads: its argument lists, overall settings, data set and quick-start files."""
    keys = set(argument_list.general_arguments + argument_list.training_arguments
               + argument_list.evaluation_arguments + argument_list.dataset_arguments)
    properties = os.path.join(os.path.dirname(recbole.__file__), "properties")
    keys |= _yaml_keys(os.path.join(properties, "overall.yaml"))
    for folder in ("dataset", "quick_start_config"):
        for path in glob.glob(os.path.join(properties, folder, "*.yaml")):
            if os.path.basename(path) not in _NOT_OPTION_FILES:
                keys |= _yaml_keys(path)
    return frozenset(keys)


def check_model_keys(keys, name: str, where: str) -> None:
    """Refuse keys that RecBole model ``name`` does not read (``where`` says where they were given, e.g.
    `` in assistant_config``), naming the closest of its keys."""
    known = recbole_model_keys(name) | recbole_general_keys()
    unknown = [str(k) for k in keys if str(k) not in known]
    if not unknown:
        return
    hints = []
    for key in unknown:
        near = _closest(key, known)
        hints.append(f"{key} (did you mean {' or '.join(near)}?)" if near else key)
    raise UnknownOptionError(f"{name} does not read {', '.join(hints)}{where}; fix the key (its own keys are in "
                             f"RecBole's properties/model/{name}.yaml)")


def _keys_read_in(path: str) -> set[str]:
    with open(path, encoding="utf-8") as f:
        return set(_READ_IN_CODE.findall(f.read()))


@functools.lru_cache(maxsize=1)
def other_models_keys() -> dict[str, tuple[str, ...]]:
    """Each key only some RecBole models read (their property file or their code), with those models: keys that no
    general RecBole layer and nothing of the plugin reads, so an LLMMSL run given one would ignore it."""
    plugin = set()
    for path in glob.glob(os.path.join(PROPERTIES_DIR, "**", "*.yaml"), recursive=True):
        if os.path.relpath(path, PROPERTIES_DIR).split(os.sep)[0] != "comparisons":
            plugin |= _yaml_keys(path)
    for path in glob.glob(os.path.join(_HERE, "**", "*.py"), recursive=True):
        plugin |= _keys_read_in(path)
    shared = recbole_general_keys() | plugin
    owners: dict[str, set[str]] = {}
    recbole_dir = os.path.dirname(recbole.__file__)
    for path in glob.glob(os.path.join(recbole_dir, "properties", "model", "*.yaml")):
        for key in _yaml_keys(path) - shared:
            owners.setdefault(key, set()).add(os.path.splitext(os.path.basename(path))[0])
    for path in glob.glob(os.path.join(recbole_dir, "model", "**", "*.py"), recursive=True):
        for key in _keys_read_in(path) - shared:
            owners.setdefault(key, set()).add(os.path.splitext(os.path.basename(path))[0])
    return {key: tuple(sorted(models)) for key, models in owners.items()}


def check_keys_llmmsl_reads(config, assistant: str | None, loads_assistant: bool) -> None:
    """Refuse, for an LLMMSL run, keys only other RecBole models read (``hidden_size``, ``dropout_prob``...), which
    it would accept and ignore; an assistant named by ``assistant`` takes the keys its model reads. Skipped when
    the run loads its assistant from a checkpoint (checked there) or allows unknown keys."""
    if loads_assistant or allows_unknown(config[ALLOW_UNKNOWN]):
        return
    given = set()
    for layer in ("file_config_dict", "variable_config_dict", "cmd_config_dict"):
        given |= set(getattr(config, layer, None) or {})
    owners, mine = other_models_keys(), recbole_model_keys(assistant) if assistant else frozenset()
    stray = sorted(k for k in given if k in owners and k not in mine)
    if not stray:
        return
    named = [m for m in owners[stray[0]] if not m.islower()] or list(owners[stray[0]])  # model names, not files
    models = ", ".join(named[:3]) + (" ..." if len(named) > 3 else "")
    fix = (f"{assistant} does not read it either; drop it" if assistant else
           f"drop it, or set it for an assistant: --assistant=SASRec --assistant_config=\"{{'{stray[0]}': ...}}\"")
    raise UnknownOptionError(f"LLMMSL does not read {', '.join(stray)} (a setting of RecBole's {models}), so it "
                             f"would change nothing; {fix} (on purpose: {ALLOW_UNKNOWN}: True)")


def allows_unknown(value) -> bool:
    return str(value).strip().lower() in ("true", "1", "yes")


def _closest(key: str, known) -> list[str]:
    """Up to two known keys closest to ``key`` (case-insensitive), best first."""
    lowered = {k.lower(): k for k in sorted(known)}
    wanted = key.lower().replace("-", "_")
    near = difflib.get_close_matches(wanted, list(lowered), n=2, cutoff=0.6)
    if len(near) == 2 and difflib.SequenceMatcher(None, wanted, near[1]).ratio() < \
            difflib.SequenceMatcher(None, wanted, near[0]).ratio() - 0.05:
        near = near[:1]  # a clear best match alone
    return [lowered[k] for k in near]


def check_option_keys(keys, where: str = "", style: str = "flag", extra_known=()) -> None:
    """Refuse keys that no configuration layer knows with one line naming the closest known ones.

    ``where``: where the keys were given (`` in config file X``; empty for the command line); ``style``: how keys
    are written there: ``flag`` (``--key``), ``yaml`` (``key``) or ``dict`` (``'key'``); ``extra_known``: keys a
    caller also accepts (a sub-command's own flags).
    """
    known = known_option_keys() | set(extra_known)
    unknown = [str(k) for k in keys if str(k) not in known]
    if not unknown:
        return
    show, hatch = {"flag": (lambda k: f"--{k}", f"--{ALLOW_UNKNOWN}=True"),
                   "yaml": (str, f"{ALLOW_UNKNOWN}: True"),
                   "dict": (repr, f"{{'{ALLOW_UNKNOWN}': True}}")}[style]

    def hint(key):
        near = _closest(key, known)
        return f"did you mean {' or '.join(show(k) for k in near)}?" if near else \
            "no known option is close (README.md lists them under Options)"

    if len(unknown) == 1:
        raise UnknownOptionError(f"unknown option {show(unknown[0])}{where}; {hint(unknown[0])} "
                                 f"(a custom key on purpose: add {hatch})")
    listed = ", ".join(f"{show(k)} ({hint(k)})" for k in unknown)
    raise UnknownOptionError(f"unknown options{where}: {listed}; fix them (custom keys on purpose: add {hatch})")


def check_override_args(args: list[str], extra_known=()) -> dict[str, str]:
    """``--key=value`` strings to a dict (:func:`parse_overrides`), refusing unknown keys unless
    ``--allow_unknown_keys=True`` is among them."""
    overrides = parse_overrides(args)
    if not allows_unknown(overrides.get(ALLOW_UNKNOWN, False)):
        check_option_keys(overrides, extra_known=extra_known)
    return overrides
