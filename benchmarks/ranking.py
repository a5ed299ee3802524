"""Benchmark 3: users per second of ``full_sort_predict`` against Hugging Face's constrained ``generate``.

Same users, backbone, trie, beams (10) and length penalty; both decode the same batch of users
together (left-padded). For every user the two must return the same titles with the same scores
(within float tolerance): the benchmark raises otherwise. Titles shared by several items are
compared once (they sit on one trie leaf and get one score).
"""

from __future__ import annotations

import contextlib
import time

import torch

from .common import log, sync, write_json
from .fixture import PROMPT_HISTORY, load_setting, valid_users
from .hf_generate import hf_rank
from .reference import DictTrie

SCORE_TOL = 1e-3  # absolute, on length-normalised log-probabilities


def our_titles(model, scores: torch.Tensor) -> list[list[tuple]]:
    """Per user: [(response token tuple, score)] of every scored title, best first."""
    users = []
    for row in scores:
        found = torch.isfinite(row).nonzero().squeeze(1).tolist()
        titles = {tuple(model.prompts.response(i)): float(row[i]) for i in found}
        users.append(sorted(titles.items(), key=lambda kv: -kv[1]))
    return users


def compare_users(ours: list, hf: list, tol: float = SCORE_TOL) -> list[dict]:
    """One record per user; ``same`` is True when both return the same titles and scores."""
    records = []
    for u, (a, b) in enumerate(zip(ours, hf)):
        da, db = dict(a), dict(b)
        common = set(da) & set(db)
        worst = max((abs(da[t] - db[t]) for t in common), default=0.0)
        records.append({"user_row": u, "same_titles": set(da) == set(db), "max_score_diff": worst,
                        "only_ours": len(set(da) - set(db)), "only_hf": len(set(db) - set(da)),
                        "same": set(da) == set(db) and worst <= tol})
    return records


def run(quick: bool = False) -> dict:
    config, train, valid, model = load_setting()
    n_users = 2 if quick else 10
    users = valid_users(valid, n_users)
    model.eval()
    beams = model.opts.num_beams
    dict_trie = DictTrie(model.prompts.sequences()[0])

    sync()
    start = time.perf_counter()
    with torch.no_grad():
        scores = model.full_sort_predict(users)
    sync()
    ours_s = time.perf_counter() - start
    log(f"ranking: ours {n_users} users in {ours_s:.1f} s")

    histories = model._histories(users)
    ids, mask = model.pad([model.prompts.prompt(h) for h in histories], left=True)
    sync()
    start = time.perf_counter()
    hf = hf_rank(model.base, ids, mask, dict_trie, beams, model.trie.max_depth, model.opts.length_penalty)
    sync()
    hf_s = time.perf_counter() - start
    log(f"ranking: Hugging Face generate {n_users} users in {hf_s:.1f} s")

    guided = _guided_ranking(config, train._dataset, model, users, quick)
    records = compare_users(our_titles(model, scores), hf)
    figures = {
        "quick": quick, "users": n_users, "num_beams": beams, "length_penalty": model.opts.length_penalty,
        "titles": model.trie.num_leaves, "trie_depth": model.trie.max_depth,
        "prompt_tokens_mean": float(mask.sum(1).float().mean()),
        "decode_batch_size": model.opts.decode_batch_size,
        "ours_s": ours_s, "hf_s": hf_s,
        "ours_users_per_s": n_users / ours_s, "hf_users_per_s": n_users / hf_s,
        "ours_s_per_user": ours_s / n_users, "hf_s_per_user": hf_s / n_users,
        "speedup": hf_s / ours_s, "score_tolerance": SCORE_TOL,
        "identical_users": sum(r["same"] for r in records), "per_user": records, **guided,
    }
    write_json("ranking", figures)
    log(f"ranking: {figures['speedup']:.2f}x, identical for {figures['identical_users']}/{n_users} users")
    if figures["identical_users"] != n_users:
        raise AssertionError(f"top-{beams} differs from Hugging Face for some users: {records}")
    return figures


ASSISTANT_TRAINING = {"epochs": 5, "train_batch_size": 2048, "MAX_ITEM_LIST_LENGTH": PROMPT_HISTORY,
                      "show_progress": False}  # about a minute alone on 2 cores; valid NDCG@10 about 0.056


def _guided_ranking(config, dataset, model, users, quick: bool = False) -> dict:
    """Seconds to rank the same users with and without an assistant, each timed on its second call, in turns.

    The assistant's scores steer which beams survive, so its weights change the search's work: a trained SASRec
    (as a run uses; its histories are the prompts' 10 titles) is the figure the target is about, an untrained one
    (near-uniform masses, which favour large subtrees and keep more beams alive) is the worst case beside it.
    ``quick`` measures the untrained one only."""
    from recbole_msl.recbole_seam.assistant import assistant_config
    from recbole_msl.recbole_seam.build import build_run
    from recbole_msl.recbole_seam.registry import get_model

    untrained = get_model("SASRec")(assistant_config(config, "SASRec", {"MAX_ITEM_LIST_LENGTH": PROMPT_HISTORY}),
                                    dataset).eval()
    figures = {"untrained": _timed_pair(model, untrained, users, "untrained")}
    if not quick:
        start = time.perf_counter()
        built = build_run(assistant_config(config, "SASRec", ASSISTANT_TRAINING))
        _, valid = built.trainer.fit(built.train_data, built.valid_data, saved=False, show_progress=False)
        trained_s = time.perf_counter() - start
        log(f"ranking: SASRec assistant trained in {trained_s:.0f} s (valid NDCG@10 {float(valid['ndcg@10']):.4f})")
        figures["trained"] = {**_timed_pair(model, built.model.eval(), users, "trained"),
                              "train_s": trained_s, "valid_ndcg@10": float(valid["ndcg@10"])}
    main = figures.get("trained", figures["untrained"])
    return {**figures, "assistant": "trained" if "trained" in figures else "untrained",
            "plain_s": main["plain_s"], "guided_s": main["guided_s"], "guided_vs_plain": main["guided_vs_plain"],
            "assistant_own_s": main["assistant_own_s"], "assistant_own_share": main["assistant_own_share"]}


def _timed_pair(model, assistant, users, label: str) -> dict:
    model.attach_assistant(assistant, {"model": "SASRec", "source": f"benchmark ({label})"})
    seconds = {"plain": [], "guided": []}
    counts = {}
    own = _AssistantClock()
    try:
        with torch.no_grad(), own.watching(model):
            for _ in range(2):
                for kind, weight in (("plain", 0.0), ("guided", 1.0)):
                    model.assistant_weight = weight
                    own.reset()
                    sync()
                    start = time.perf_counter()
                    model.full_sort_predict(users)
                    sync()
                    seconds[kind].append(time.perf_counter() - start)
                    counts[kind] = own.counts()
    finally:
        model.assistant, model.assistant_weight = None, 0.0
    plain, guided = seconds["plain"][-1], seconds["guided"][-1]
    log(f"ranking ({label} SASRec): with the assistant {guided:.2f} s, without {plain:.2f} s "
        f"({guided / plain:.3f}x); the assistant's own work {own.seconds:.3f} s ({own.seconds / guided:.1%}); LM rows "
        f"stepped {counts['guided']['rows']} in {counts['guided']['steps']} steps guided, {counts['plain']['rows']} in "
        f"{counts['plain']['steps']} without")
    return {"plain_s": plain, "guided_s": guided, "guided_vs_plain": guided / plain, "assistant_own_s": own.seconds,
            "assistant_own_share": own.seconds / guided, "lm_rows": {k: v["rows"] for k, v in counts.items()},
            "steps": {k: v["steps"] for k, v in counts.items()}}


class _AssistantClock:
    """Seconds spent in the assistant's own work (its scores, the users' masses, the per-step lookups) and the LM
    rows the search steps, measured by wrapping those calls on this benchmark's objects."""

    def __init__(self):
        self.seconds, self.rows, self.steps = 0.0, 0, 0

    def reset(self):
        self.seconds, self.rows, self.steps = 0.0, 0, 0

    def counts(self) -> dict:
        return {"rows": self.rows, "steps": self.steps}

    def _timed(self, fn):
        def wrapper(*args, **kwargs):
            start = time.perf_counter()
            try:
                return fn(*args, **kwargs)
            finally:
                self.seconds += time.perf_counter() - start
        return wrapper

    @contextlib.contextmanager
    def watching(self, model):
        from recbole_msl.core import subtree_mass
        from recbole_msl.lm import cached_lm

        step = cached_lm.CachedCausalLM.step

        def counted_step(lm, tokens, *args):
            self.rows, self.steps = self.rows + tokens.numel(), self.steps + 1
            return step(lm, tokens, *args)

        saved = [(subtree_mass.UserMasses, "log_share"), (subtree_mass.UserMasses, "log_best_share"),
                 (subtree_mass.SubtreeRanges, "masses")]
        originals = [getattr(owner, name) for owner, name in saved]
        model.assistant_log_probs = self._timed(model.assistant_log_probs)
        for (owner, name), original in zip(saved, originals):
            setattr(owner, name, self._timed(original))
        cached_lm.CachedCausalLM.step = counted_step
        try:
            yield
        finally:
            del model.assistant_log_probs
            for (owner, name), original in zip(saved, originals):
                setattr(owner, name, original)
            cached_lm.CachedCausalLM.step = step


def summary(figures: dict) -> list[tuple]:
    rows = [("ranking users/s (10 beams)", figures["ours_users_per_s"], figures["hf_users_per_s"],
             figures["speedup"], ">= 10x, identical", figures["speedup"] >= 10
             and figures["identical_users"] == figures["users"])]
    if "guided_vs_plain" in figures:
        users = figures["users"]
        which = figures.get("assistant", "untrained")
        rows.append((f"ranking users/s with / without an assistant ({which} SASRec)", users / figures["guided_s"],
                     users / figures["plain_s"], figures["guided_vs_plain"], "time <= 1.10x",
                     figures["guided_vs_plain"] <= 1.10))
        if which == "trained" and "untrained" in figures:
            worst = figures["untrained"]
            rows.append(("  the same with an untrained SASRec (near-uniform masses: worst case)",
                         users / worst["guided_s"], users / worst["plain_s"], worst["guided_vs_plain"], None, None))
        if "assistant_own_share" in figures:
            rows.append(("assistant's own work, % of guided ranking time", 100 * figures["assistant_own_share"],
                         None, None, "<= 10%", figures["assistant_own_share"] <= 0.10))
    return rows
