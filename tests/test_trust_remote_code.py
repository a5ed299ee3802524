"""Code shipped with a checkpoint runs only when trust_remote_code is set to True explicitly."""

import json
import shutil

import pytest
import torch

from recbole_msl.errors import ConfigError
from recbole_msl.lm.backbone import load_backbone
from recbole_msl.lm.options import BackboneOptions
from recbole_msl.recbole_seam.config import Config

# Imported by transformers only if it trusts the folder's code: leaves a marker file behind, then fails.
CUSTOM_CODE = """
import pathlib
pathlib.Path({marker!r}).touch()
raise RuntimeError("remote code ran")
"""


@pytest.fixture
def folder_with_code(tiny_llm_dir, tmp_path):
    """The tiny Llama, relabelled as an unknown architecture whose classes live in the folder's own .py file."""
    folder = tmp_path / "model-with-code"
    shutil.copytree(tiny_llm_dir, folder)
    marker = tmp_path / "remote-code-ran"
    (folder / "custom_model.py").write_text(CUSTOM_CODE.format(marker=str(marker)))
    config = json.loads((folder / "config.json").read_text())
    config.update(model_type="msl-untrusted-test", auto_map={"AutoConfig": "custom_model.CustomConfig",
                                                             "AutoModelForCausalLM": "custom_model.CustomModel"})
    (folder / "config.json").write_text(json.dumps(config))
    return folder, marker


def _config(folder, **extra):
    return {"llm_path": str(folder), "llm_dtype": "float32", "llm_load_in_bits": None, **extra}


def test_default_is_off():
    assert Config(model="LLMMSL", dataset="ml-100k")["trust_remote_code"] is False


def test_folder_code_is_not_run_by_default(folder_with_code):
    folder, marker = folder_with_code
    with pytest.raises(ConfigError, match="could not load a causal LM"):
        load_backbone(BackboneOptions.from_mapping(_config(folder, trust_remote_code=False)), torch.device("cpu"))
    assert not marker.exists()


def test_only_a_literal_true_enables_it(folder_with_code):
    folder, marker = folder_with_code
    for value in ("no", "false", 1, "yes"):
        with pytest.raises(ConfigError, match="trust_remote_code must be True or False"):
            load_backbone(BackboneOptions.from_mapping(_config(folder, trust_remote_code=value)), torch.device("cpu"))
    assert not marker.exists()


def test_explicit_true_does_run_it(folder_with_code, tmp_path, monkeypatch):
    """The control: the marker mechanism works, so its absence above means the code never ran."""
    import transformers.dynamic_module_utils as dynamic

    modules = tmp_path / "hf-modules"
    monkeypatch.setattr(dynamic, "HF_MODULES_CACHE", str(modules))  # keep the copied module out of ~/.cache
    folder, marker = folder_with_code
    with pytest.raises(Exception):  # noqa: B017 - the planted code raises on import
        load_backbone(BackboneOptions.from_mapping(_config(folder, trust_remote_code=True)), torch.device("cpu"))
    assert marker.exists()
