"""Benchmark 2b: memory the reference's per-sample dense masks would take on whole training sets.

Computed, never allocated: a stored mask is [response tokens x vocabulary] booleans (1 byte each),
one per training sample. Figures are given for Llama-3's vocabulary (128,256, the authors' case)
and the default backbone's (49,152), next to what this project stores instead (the trie's arrays).

Response lengths use the default backbone's tokenizer (SmolLM2; Llama-3's tokenizer is not
available offline, and its larger vocabulary usually needs no more tokens per title).
  * ml-100k: exact, from the training split the suite loads (every target's title).
  * amazon-books: exact, from the shared release's train file (31,554 windows).
  * ml-1m: the interaction file is not available offline, so the sample count is RecBole's
    leave-one-out training set of the published data (1,000,209 ratings, 6,040 users, every user
    with >= 20 ratings: 1,000,209 - 3 x 6,040 = 982,089 sequences) and the response length is the
    mean over the 3,883 titles of the shared item file.
"""

from __future__ import annotations

import os

import numpy as np

from .common import log, write_json
from .fixture import ROOT, load_setting

LLAMA3_VOCAB = 128_256
SHARED = os.path.join(os.path.dirname(ROOT), "shared", "datasets")
ML1M_TRAIN_SEQUENCES = 1_000_209 - 3 * 6_040


def _read_titles(path: str, column: str) -> dict[str, str]:
    with open(path, encoding="utf-8") as f:
        header = f.readline().rstrip("\n").split("\t")
        col = next(i for i, h in enumerate(header) if h.split(":")[0] == column)
        return {row[0]: row[col] for row in (line.rstrip("\n").split("\t") for line in f) if len(row) > col}


def _restore_article(title: str) -> str:
    for article in ("The", "A", "An"):
        if title.endswith(f", {article}"):
            return f"{article} {title[:-len(article) - 2]}"
    return title


def _response_lengths(tokenizer, titles: list[str]) -> np.ndarray:
    """Tokens of each quoted title plus EOS, as the response is built."""
    ids = tokenizer([f'"{t}"' for t in titles], add_special_tokens=False)["input_ids"]
    return np.array([len(x) + 1 for x in ids], dtype=np.int64)


def _figures(name: str, samples: int, response_tokens: int, exact: bool, trie_bytes: int | None) -> dict:
    out = {"dataset": name, "training_samples": samples, "response_tokens_total": response_tokens,
           "mean_response_tokens": response_tokens / samples, "exact": exact,
           "mask_bytes_llama3": response_tokens * LLAMA3_VOCAB, "mask_bytes_smollm2": response_tokens * 49_152}
    if trie_bytes is not None:
        out["trie_bytes_ours"] = trie_bytes
    log(f"masks {name}: {samples} samples x {out['mean_response_tokens']:.1f} tokens x 128,256 = "
        f"{out['mask_bytes_llama3'] / 2 ** 30:.1f} GiB")
    return out


def _trie_bytes(tokenizer, eos: int, titles: list[str]) -> int:
    from recbole_msl.core.trie import TokenTrie

    ids = tokenizer([f'"{t}"' for t in titles], add_special_tokens=False)["input_ids"]
    trie = TokenTrie.build([list(x) + [eos] for x in ids], [[i] for i in range(len(ids))], len(ids))
    return sum(v.numel() * v.element_size() for v in trie.__dict__.values() if hasattr(v, "numel"))


def run(quick: bool = False) -> dict:
    _, train, _, model = load_setting()
    tok, eos = model.tokenizer, model.tokenizer.eos_token_id
    results = {}

    # ml-100k: every training target of the split the suite runs on
    targets = train._dataset.inter_feat[model.POS_ITEM_ID].tolist()
    lengths = [len(model.prompts.response(t)) for t in targets]
    trie = sum(v.numel() * v.element_size() for v in model.trie.__dict__.values() if hasattr(v, "numel"))
    results["ml-100k"] = _figures("ml-100k", len(targets), sum(lengths), True, trie)

    books = os.path.join(SHARED, "amazon-books")
    if os.path.isdir(books):
        titles = _read_titles(os.path.join(books, "amazon-books.item"), "title")
        with open(os.path.join(books, "amazon-books.train.inter"), encoding="utf-8") as f:
            f.readline()
            train_targets = [line.rstrip("\n").split("\t")[2] for line in f if line.strip()]
        per_item = dict(zip(titles, _response_lengths(tok, list(titles.values()))))
        total = int(sum(per_item[t] for t in train_targets))
        results["amazon-books"] = _figures("amazon-books", len(train_targets), total, True,
                                           _trie_bytes(tok, eos, list(titles.values())))

    ml1m = os.path.join(SHARED, "ml-1m-items", "ml-1m.item")
    if os.path.isfile(ml1m):
        titles = [_restore_article(t) for t in _read_titles(ml1m, "movie_title").values()]
        mean = float(_response_lengths(tok, titles).mean())
        results["ml-1m"] = _figures("ml-1m", ML1M_TRAIN_SEQUENCES, round(mean * ML1M_TRAIN_SEQUENCES), False,
                                    _trie_bytes(tok, eos, titles))
    figures = {"vocab_llama3": LLAMA3_VOCAB, "tokenizer": "SmolLM2 (stand-in for Llama-3's)", "datasets": results}
    write_json("mask_memory", figures)
    return figures


def summary(figures: dict) -> list[tuple]:
    rows = []
    for name, f in figures["datasets"].items():
        rows.append((f"per-sample masks GiB, {name} (128k vocab)", f.get("trie_bytes_ours", 0) / 2 ** 30,
                     f["mask_bytes_llama3"] / 2 ** 30, None, "computed", None))
    return rows
