"""The assistant's weight, chosen on validation after the LLM's own training: each value of the
``assistant_weight`` grid ranks the validation users once with the best adapter, and the best is kept and stored
with the adapter (the test split is never looked at)."""

from __future__ import annotations

import torch.distributed as dist

from ..checkpoint import load_checkpoint, save_assistant, update_checkpoint
from ..summary import at_grid_edge


class AssistantWeightGridMixin:
    """Needs the trainer's ``model``, ``config``, ``saved_model_file``, ``rank``, ``distributed`` and ``_valid_epoch``."""

    def choose_assistant_weight(self, valid_data, show_progress=False) -> list[dict]:
        """Rank the validation users once per ``assistant_weight`` with the best adapter and keep the best weight
        (validation only: the test split is never looked at); store the assistant and the choice in the adapter
        folder. Returns every weight's validation result."""
        load_checkpoint(self.model, self.saved_model_file)
        grid, best = [], None
        for weight in self.model.opts.assistant_weights:
            self.model.assistant_weight = weight
            score, result = self._valid_epoch(valid_data, show_progress=show_progress)
            grid.append({"assistant_weight": weight, "score": float(score),
                         "valid": {k: float(v) for k, v in dict(result).items()}})
            self.logger.info(f"assistant_weight {weight}: {self.config['valid_metric']} {score:.4f}")
            better = best is None or (score > best[0] if self.valid_metric_bigger else score < best[0])
            if better:
                best = (score, result, weight)
        self.best_valid_score, self.best_valid_result, self.model.assistant_weight = best
        self.logger.info(f"assistant_weight {best[2]} kept (best {self.config['valid_metric']} on validation)")
        if at_grid_edge([g["assistant_weight"] for g in grid], best[2]):
            self.logger.warning(f"assistant_weight {best[2]} kept is the grid's largest: a larger weight may rank "
                                f"better on validation; add one (e.g. {2 * best[2]:g}) to assistant_weight")
        if self.rank == 0:
            record = {k: v for k, v in self.model.assistant_record.items()}
            choice = {"assistant": {**record, "weight": best[2], "grid": grid,
                                    "temperature": self.model.opts.assistant_temperature,
                                    "llm_weight": self.model.opts.llm_weight}}
            update_checkpoint(self.saved_model_file, choice,
                              lambda staging: save_assistant(staging, self.model.assistant, record))
        if self.distributed:
            dist.barrier()
        return grid
