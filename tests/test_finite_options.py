"""Every float option must be finite where the code uses it: ``.nan`` or ``.inf`` in a YAML file (or ``nan`` on
the command line) stops with one line naming the key, before any data or model loads (issue 43, case 4)."""

from __future__ import annotations

import math

import pytest

from recbole_msl.convert import convert
from recbole_msl.errors import ConfigError
from recbole_msl.model.options import LLMMSLOptions
from recbole_msl.recbole_seam.config import Config
from recbole_msl.validate import number

NAN, INF = float("nan"), float("inf")


@pytest.mark.parametrize("value", [NAN, INF, -INF])
def test_number_refuses_nan_and_infinities_naming_the_key(value):
    with pytest.raises(ConfigError, match=r"^some_key must be a finite number") as err:
        number(value, "some_key", low=0.0)
    assert "\n" not in str(err.value)


def test_number_allows_infinity_only_when_the_caller_says_so():
    assert number(INF, "limit", low=0.0, allow_inf=True) == INF
    with pytest.raises(ConfigError, match="limit must be a finite number"):
        number(NAN, "limit", low=0.0, allow_inf=True)  # NaN is never a value
    assert number(3, "k", low=0.0) == 3.0 and isinstance(number(3, "k"), float)


def _options(**overrides):
    config = Config(model="LLMMSL", dataset="ml-100k", config_dict=overrides)
    return LLMMSLOptions.from_config(config)


@pytest.mark.parametrize("key, value, extra", [
    ("assistant_weight", NAN, {"assistant": "SASRec"}),
    ("assistant_weight", [0.0, NAN], {"assistant": "SASRec"}),
    ("assistant_weight", INF, {"assistant": "SASRec"}),
    ("assistant_temperature", NAN, {"assistant": "SASRec", "assistant_weight": 1.0}),
    ("llm_weight", NAN, {"assistant": "SASRec", "assistant_weight": 1.0}),
    ("tau", NAN, {}),
    ("tau", INF, {}),
    ("ats_tau_init", NAN, {"tau": "ats"}),
    ("ats_eta", NAN, {}),
    ("ats_alpha", NAN, {}),
    ("length_penalty", NAN, {}),
    ("length_penalty", -INF, {}),
])
def test_llmmsl_float_options_must_be_finite(key, value, extra):
    with pytest.raises(ConfigError) as err:
        _options(**{key: value, **extra})
    message = str(err.value)
    assert message.startswith(f"{key} must be a finite number"), message
    assert "\n" not in message


def test_finite_llmmsl_options_still_pass():
    opts = _options(assistant="SASRec", assistant_weight=[0.0, 0.5], tau=0.5, length_penalty=-1.5)
    assert opts.assistant_weights == (0.0, 0.5) and math.isclose(opts.tau_init, 0.5)
    assert opts.length_penalty == -1.5


# ----------------------------------------------------------------------- the converters' numeric options
def _generic_files(tmp_path):
    inter = tmp_path / "i.csv"
    inter.write_text("user_id,item_id,rating,timestamp\nu,a,5,1500000000\nu,b,4,1500000100\n")
    items = tmp_path / "t.csv"
    items.write_text("item_id,title\na,A\nb,B\n")
    return {"interactions": str(inter), "items": str(items), "rating_col": "rating"}


@pytest.mark.parametrize("option, value", [
    ("min_rating", "nan"), ("min_rating", "inf"), ("min_rating", NAN),
    ("start", "nan"), ("end", "inf"), ("start", NAN), ("end", -INF),
])
def test_convert_numeric_options_must_be_finite(tmp_path, option, value):
    with pytest.raises(ConfigError) as err:
        convert("generic", str(tmp_path / "out"), "g", **_generic_files(tmp_path), **{option: value})
    message = str(err.value)
    assert message.startswith(f"--{option} "), message
    assert "finite" in message and "\n" not in message
    assert not (tmp_path / "out" / "g").exists()


@pytest.mark.parametrize("value", ["nan", "inf", NAN])
def test_sliding_window_valid_fraction_must_be_finite(tmp_path, value):
    folder = tmp_path / "Toy"
    folder.mkdir()
    (folder / "train.csv").write_text('user_id,item_ids,timestamp\n1,"[1, 2]",5\n2,"[1, 2]",6\n')
    (folder / "test.csv").write_text('user_id,item_ids,timestamp\n1,"[1, 2, 3]",7\n')
    (folder / "id2name4Rec.json").write_text('{"1": "A", "2": "B", "3": "C"}')
    with pytest.raises(ConfigError, match=r"^--valid_fraction .*finite"):
        convert("sliding-window", str(tmp_path / "out"), "toy", folder=str(folder), valid_fraction=value)


@pytest.mark.parametrize("override, message", [
    ({"lora_alpha": float("nan")}, "lora_alpha must be a positive number"),
    ({"ats_range": [0.1, float("inf")]}, "ats_range must be .* both finite"),
    ({"learning_rate": float("nan")}, "learning_rate must be a finite number"),
    ({"weight_decay": float("inf")}, "weight_decay must be a finite number"),
])
def test_the_other_float_options_must_be_finite_too(override, message):
    from recbole_msl.errors import ConfigError as Error
    from recbole_msl.model.options import LLMMSLOptions
    from recbole_msl.recbole_seam.config import Config

    with pytest.raises(Error, match=message) as err:
        LLMMSLOptions.from_config(Config(model="LLMMSL", dataset="ml-100k", config_dict=override))
    assert "\n" not in str(err.value)


@pytest.mark.parametrize("override, message", [
    ({"valid_metric": "NDCG@20"}, "valid_metric NDCG@20 is not computed"),
    ({"valid_metric": "ndgc@10"}, "valid_metric ndgc@10 is not computed"),
    ({"show_examples": -1}, "show_examples must be an integer >= 0"),
    ({"eval_args": {"mode": "ful"}}, "eval_args mode 'ful' is not one of RecBole's modes"),
])
def test_evaluation_settings_that_would_fail_after_training_fail_first(override, message):
    from recbole_msl.errors import ConfigError as Error
    from recbole_msl.recbole_seam.config import Config

    with pytest.raises(Error, match=message) as err:
        Config(model="LLMMSL", dataset="ml-100k", config_dict=override)
    assert "\n" not in str(err.value)


def test_topk_as_a_number_means_a_list_of_one():
    from recbole_msl.recbole_seam.config import Config

    assert Config(model="SASRec", dataset="ml-100k", config_dict={"topk": 10})["topk"] == [10]
