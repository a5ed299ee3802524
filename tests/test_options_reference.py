"""The options reference (docs/options.md) is generated from the shipped YAML defaults and matches the code."""

import glob
import os

import pytest

import recbole_msl
from recbole_msl.recbole_seam.config import _READ_IN_CODE, PROPERTIES_DIR, Config, _yaml_keys
from recbole_msl.recbole_seam.options_reference import SOURCES, options, reference_markdown

PACKAGE = os.path.dirname(os.path.abspath(recbole_msl.__file__))
DOCS = os.path.join(os.path.dirname(PACKAGE), "docs", "options.md")


def documented() -> dict:
    return {r["key"]: r for _, rel in SOURCES for r in options(os.path.join(PROPERTIES_DIR, rel))}


def recbole_keys() -> set[str]:
    import recbole
    from recbole.utils import argument_list

    keys = set(argument_list.general_arguments + argument_list.training_arguments
               + argument_list.evaluation_arguments + argument_list.dataset_arguments)
    folder = os.path.dirname(recbole.__file__)
    for path in glob.glob(os.path.join(folder, "properties", "**", "*.yaml"), recursive=True):
        keys |= _yaml_keys(path)
    for path in glob.glob(os.path.join(folder, "**", "*.py"), recursive=True):
        with open(path, encoding="utf-8") as f:
            keys |= set(_READ_IN_CODE.findall(f.read()))
    return keys


def undocumented(reference: set[str]) -> set[str]:
    """Keys the plugin's code reads (config["..."]) that are no RecBole option and missing from ``reference``."""
    read = set()
    for path in glob.glob(os.path.join(PACKAGE, "**", "*.py"), recursive=True):
        with open(path, encoding="utf-8") as f:
            read |= set(_READ_IN_CODE.findall(f.read()))
    return read - recbole_keys() - reference - {"key"}  # "key": a placeholder in an error message's example


@pytest.mark.skipif(not os.path.isfile(DOCS), reason="a source checkout's docs/ (not in the wheel)")
def test_the_page_is_the_generated_reference():
    with open(DOCS, encoding="utf-8") as f:
        assert f.read() == reference_markdown(), "docs/options.md is stale: run make docs"


def test_every_option_the_code_reads_is_documented():
    keys = set(documented())
    assert undocumented(keys) == set()
    assert undocumented(keys - {"assistant_weight"}) == {"assistant_weight"}  # the check can fail


def test_every_documented_default_is_the_one_the_code_uses():
    """What a run gets with nothing set (for a data set whose own YAML sets none of these keys), and the defaults
    of the typed options the LM side is given."""
    from recbole_msl.lm.options import BackboneOptions, LoraOptions
    from recbole_msl.model.options import LLMMSLOptions

    config = Config(model="LLMMSL", dataset="ml-1m")
    dataset_file = os.path.join(PROPERTIES_DIR, "dataset", "ml-1m.yaml")
    set_by_dataset = _yaml_keys(dataset_file) if os.path.isfile(dataset_file) else set()
    rewritten_by_recbole = {"train_neg_sample_args"}  # RecBole turns ~ into its own {distribution: none, ...}
    for key, row in documented().items():
        if key not in set_by_dataset | rewritten_by_recbole:
            assert config[key] == row["default"], key
    docs = documented()
    for cls in (BackboneOptions, LoraOptions):
        for field in cls.__dataclass_fields__.values():
            key, default = field.metadata["key"], field.default
            if key in docs and key != "show_progress":
                expected = docs[key]["default"]
                assert (tuple(expected) if isinstance(expected, list) else expected) == default, key
    options = LLMMSLOptions.from_config(config)
    assert (options.decoder, options.assistant_temperature, options.llm_weight) == (
        docs["decoder"]["default"], docs["assistant_temperature"]["default"], docs["llm_weight"]["default"])
    assert options.assistant_weights == (docs["assistant_weight"]["default"],)


def test_every_link_of_the_readme_resolves():
    import re

    root = os.path.dirname(PACKAGE)
    with open(os.path.join(root, "README.md"), encoding="utf-8") as f:
        text = f.read()
    links = [t for t in re.findall(r"\]\(([^)]+)\)", text) if not t.startswith(("http://", "https://", "#"))]
    assert len(links) >= 10
    missing = [t for t in links if not os.path.exists(os.path.join(root, t.split("#")[0]))]
    assert missing == []
    assert len(text.splitlines()) <= 150


def test_a_registry_entry_is_on_the_options_page_without_touching_the_yaml(monkeypatch):
    """Adding a loss, a decoder, a format or a fine-tuning mode is one registry entry: the page lists the names."""
    from recbole_msl.model import objectives
    from recbole_msl.recbole_seam import options_reference

    for key, names in options_reference.CHOICES.items():
        row = next(line for line in options_reference.reference_markdown().splitlines() if line.startswith(f"| `{key}`"))
        assert all(f"`{name}`" in row for name in names), key
    monkeypatch.setitem(objectives.OBJECTIVES, "msl_ls", objectives.OBJECTIVES["msl"])
    row = next(line for line in options_reference.reference_markdown().splitlines() if line.startswith("| `llm_loss`"))
    assert "`msl_ls`" in row
