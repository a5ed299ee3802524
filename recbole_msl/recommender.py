"""A trained LLMMSL checkpoint with its data set, ready to rank items for any history (``recbole-msl recommend``,
:func:`recbole_msl.recommend`)."""

from __future__ import annotations

import logging
import os

import torch

from .checkpoint import check_data_identity, data_identity, load_checkpoint, read_adapter, read_state
from .errors import ConfigError, EmptyRankingError
from .item_text import item_titles
from .model.options import check_titles_cover
from .recbole_seam.assistant import read_assistant
from .recbole_seam.build import build_run
from .recbole_seam.config import Config
from .recbole_seam.data import create_dataset
from .recbole_seam.option_keys import ALLOW_UNKNOWN, allows_unknown, check_option_keys
from .validate import is_int


class Recommender:
    """A trained LLMMSL checkpoint with its data set, ready to rank items for any history."""

    def __init__(self, checkpoint: str, config_dict: dict | None = None):
        """Checked before the backbone is loaded: the folder's checksums and weights, then that the data found
        (the data set's folder stored in the checkpoint, or ``config_dict['data_path']``) is the data it was
        trained on. A checkpoint saved before data fingerprints loads with a warning."""
        config_dict = dict(config_dict or {})
        if not allows_unknown(config_dict.get(ALLOW_UNKNOWN, False)):
            check_option_keys(config_dict, " in config_dict", "dict")
        state = read_state(checkpoint)
        weights = read_adapter(checkpoint)
        saved_data = state.get("data")
        overrides = dict(state.get("overrides") or {})
        if saved_data and "data_path" not in config_dict:  # where it was trained, from any working directory
            overrides["data_path"] = os.path.dirname(saved_data["data_path"])
        overrides.update(config_dict)
        overrides.update({"show_progress": False, "eval_max_users": None})
        # the stored overrides were checked when the run started (and may hold custom keys it allowed)
        self.config = Config(model=state["model"], dataset=state["dataset"], config_dict=overrides, check_keys=False)
        logging.getLogger().setLevel(logging.WARNING)
        self.dataset = create_dataset(self.config)
        check_data_identity(saved_data, data_identity(self.config, self.dataset, item_titles(self.config, self.dataset)),
                            f"checkpoint {checkpoint}")
        self.model = build_run(self.config, dataset=self.dataset, splits=False).model
        load_checkpoint(self.model, checkpoint, weights)
        if state.get("assistant"):  # ranked with an assistant: the same one, at the weight chosen on validation
            assistant, record = read_assistant(checkpoint, self.config, self.dataset)
            self.model.attach_assistant(assistant, record)
            self.model.assistant_weight = self._assistant_weight(config_dict, float(state["assistant"]["weight"]))
        self.model.eval()

    def _assistant_weight(self, config_dict: dict, chosen: float) -> float:
        """The weight chosen on validation, or one weight given here instead (a grid is for training only)."""
        if "assistant_weight" not in config_dict:
            return chosen
        weights = self.model.opts.assistant_weights
        if len(weights) != 1:
            raise ConfigError(f"assistant_weight {list(weights)} is a grid, which only training searches; give one "
                              f"weight (the checkpoint's choice on validation was {chosen:g})")
        if weights[0] != chosen:
            logging.getLogger(__name__).warning(f"ranking with assistant_weight {weights[0]:g}, not the {chosen:g} "
                                                f"chosen on validation")
        return weights[0]

    def _item_ids(self, history) -> list[int]:
        if isinstance(history, (str, bytes)) or not hasattr(history, "__iter__"):
            raise ConfigError(f"history must be a list of item ids, oldest first, not {history!r}; "
                              f"e.g. recommend(['1', '50', '172'])")
        tokens = self.dataset.field2token_id[self.dataset.iid_field]
        ids = []
        for item in history:
            if str(item) not in tokens:
                raise ConfigError(f"item {item!r} is not an item id of data set {self.config['dataset']}; "
                                  f"give ids from the first column of its .item file{self._did_you_mean(item)}")
            ids.append(tokens[str(item)])
        if not ids:
            raise ConfigError("the history is empty; give at least one item id")
        return ids

    def _did_you_mean(self, text) -> str:
        """Ids of titles that contain ``text`` (someone passed a title for an id)."""
        needle = str(text).lower()
        id2token = self.dataset.field2id_token[self.dataset.iid_field]
        matches = [(str(id2token[i]), t) for i, t in enumerate(self.model.titles) if t and needle in t.lower()][:3]
        return ("; titles containing it: " + ", ".join(f"{token} ({title})" for token, title in matches)
                if matches else "")

    def check_topk(self, topk, history, exclude_history: bool = True, cli: bool = False) -> None:
        """One-line errors for a ``topk`` that cannot be answered: more than the catalogue, than the items outside
        the history, or than ``num_beams``; the fix names the command line's flags (``cli``) or the Python keys."""
        if not is_int(topk) or topk <= 0:
            raise ConfigError(f"topk must be a positive integer, not {topk!r}")
        name, items = self.config["dataset"], self.dataset.item_num - 1  # id 0 is RecBole's padding
        asked = f"--topk={topk}" if cli else f"topk {topk}"
        if topk > items:
            fix = f"pass --topk={items} or less" if cli else f"lower topk to at most {items}"
            raise ConfigError(f"{asked} exceeds the {items} items of data set {name}; {fix}")
        if exclude_history:
            left = items - len(set(self._item_ids(history)))
            if topk > left:
                fix = (f"pass --topk={left} or less, or --include_history" if cli else
                       f"lower topk to at most {left} or pass exclude_history=False")
                raise ConfigError(f"only {left} items of data set {name} are not in the history, fewer than "
                                  f"{asked}; {fix}")
        check_titles_cover(topk, self.model.opts, asked,
                           f"pass --{{option}}={topk} (or a lower --topk)" if cli else
                           f"lower topk or load the checkpoint with config_dict={{{{'{{option}}': {topk}}}}}")

    @torch.no_grad()
    def recommend(self, history, topk: int = 10, exclude_history: bool = True):
        """Top-k (item id, title, score) for a history of item ids (oldest first), best first.

        Items of the history are left out inside the beam search (``exclude_history``), so ``topk``
        new items come back.
        """
        self.check_topk(topk, history, exclude_history)
        ids = self._item_ids(history)
        scores = self.model.rank([ids[-self.model.opts.history_length:]], [ids] if exclude_history else None)[0]
        scores[0] = float("-inf")  # RecBole's padding item
        values, items = scores.topk(topk)
        id2token = self.dataset.field2id_token[self.dataset.iid_field]
        found = [(str(id2token[i]), self.model.titles[i], float(v))
                 for v, i in zip(values.tolist(), items.tolist()) if v > float("-inf")]  # NaN and -inf: not found
        if not found:
            raise EmptyRankingError("the beam search finished no title for this history: the checkpoint's weights "
                                    "give no finite score (damaged, or its training diverged: retrain) or every title "
                                    "was left out (keep history items with --include_history)")
        return found


def recommend(checkpoint: str, history, topk: int = 10, config_dict: dict | None = None,
              exclude_history: bool = True):
    """One-shot helper: load ``checkpoint`` and return the top-k new items for ``history``."""
    return Recommender(checkpoint, config_dict).recommend(history, topk, exclude_history)
