"""train_format sequence under torchrun (two CPU processes, gloo): each rank trains its share of every epoch's
chunks, and the ranks' LoRA weights stay bit-identical (gradients summed over ranks).

The same file is the worker: ``python -m torch.distributed.run --nproc_per_node=2 tests/test_distributed_sequence.py
OUT CONFIG``.
"""

import json
import os
import sys

import torch
from safetensors.torch import load_file

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _worker(out_dir: str, config_file: str) -> None:
    from peft import get_peft_model_state_dict
    from safetensors.torch import save_file

    from recbole_msl import run
    from recbole_msl.trainer.llmmsl_trainer import LLMMSLTrainer

    rank = int(os.environ["RANK"])
    with open(config_file) as f:
        config_dict = json.load(f)
    fit, seen = LLMMSLTrainer.fit, {}
    optimizer_step = LLMMSLTrainer._optimizer_step

    def recording_step(self, batch):  # the chunks this rank trains on
        seen.setdefault("chunks", []).extend(tuple(c) for c in batch)
        return optimizer_step(self, batch)

    def fit_and_dump(self, *args, **kwargs):
        out = fit(self, *args, **kwargs)
        weights = get_peft_model_state_dict(self.model.llm)
        save_file({k: v.detach().contiguous() for k, v in weights.items()},
                  os.path.join(out_dir, f"rank{rank}.safetensors"))
        with open(os.path.join(out_dir, f"rank{rank}.json"), "w") as f:
            json.dump({"steps": self.global_step, "budget": self._epoch_budget(args[0]), "chunks": seen["chunks"],
                       "tau_trace": self.tau_trace}, f)
        return out

    LLMMSLTrainer.fit, LLMMSLTrainer._optimizer_step = fit_and_dump, recording_step
    run("LLMMSL", "ml-100k", config_dict=config_dict)


def test_ranks_train_their_own_chunks_and_keep_identical_weights(tiny_llm_dir, tmp_path, torchrun_two):
    config = {"llm_path": tiny_llm_dir, "epochs": 2, "train_samples_per_epoch": 16, "train_batch_size": 8,
              "micro_batch_size": 2, "eval_max_users": 4, "num_beams": 10, "decode_batch_size": 2,
              "eval_batch_size": 4, "show_progress": False, "log_wandb": False, "show_examples": 0,
              "checkpoint_dir": str(tmp_path / "saved"), "train_format": "sequence", "MAX_ITEM_LIST_LENGTH": 8}
    torchrun_two(__file__, tmp_path, config)
    ranks = []
    for rank in range(2):
        with open(tmp_path / f"rank{rank}.json") as f:
            ranks.append({**json.load(f), "weights": load_file(str(tmp_path / f"rank{rank}.safetensors"))})
    first, second = ranks[0]["weights"], ranks[1]["weights"]
    assert first.keys() == second.keys() and all(torch.equal(first[k], second[k]) for k in first)
    assert any(bool(v.abs().sum()) for k, v in first.items() if "lora_B" in k)  # trained
    assert [r["budget"] for r in ranks] == [8, 8] and [r["steps"] for r in ranks] == [4, 4]
    assert ranks[0]["tau_trace"] == ranks[1]["tau_trace"]
    mine = [[tuple(c) for c in r["chunks"]] for r in ranks]
    assert len(mine[0]) == len(mine[1]) == 16  # 8 chunks per epoch each, two epochs
    assert mine[0] != mine[1]  # each rank its own share of the seeded order


if __name__ == "__main__":
    _worker(sys.argv[1], sys.argv[2])
