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
    keys = {ALLOW_UNKNOWN, "model", "dataset"}
    keys.update(argument_list.general_arguments + argument_list.training_arguments
                + argument_list.evaluation_arguments + argument_list.dataset_arguments)
    recbole_dir = os.path.dirname(recbole.__file__)
    for folder in (os.path.join(recbole_dir, "properties"), PROPERTIES_DIR):
        for path in glob.glob(os.path.join(folder, "**", "*.yaml"), recursive=True):
            inside = os.path.relpath(path, folder).split(os.sep)
            if inside[0] != "comparisons" and inside[-1] not in _NOT_OPTION_FILES:  # comparison specs: own schema
                keys |= _yaml_keys(path)
    for folder in (recbole_dir, _HERE):
        for path in glob.glob(os.path.join(folder, "**", "*.py"), recursive=True):
            with open(path, encoding="utf-8") as f:
                keys.update(_READ_IN_CODE.findall(f.read()))
    return frozenset(keys)


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
