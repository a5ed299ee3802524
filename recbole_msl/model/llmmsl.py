"""LLMMSL: an LLM fine-tuned with LoRA and the Masked Softmax Loss, as a RecBole sequential model.

Reference: Wang et al., "MSL: Not All Tokens Are What You Need for Tuning LLM as a
Recommender", SIGIR 2025 (arXiv 2504.04178).

The LLM reads the titles of a user's last items and spells the next item's title.
Training uses MSL (softmax over the trie's valid tokens, temperature tau, optionally
adaptive) or LML (full-vocabulary cross-entropy). Ranking is constrained beam search
over the same trie; finished beams score their items, every other item is -inf.
"""

from __future__ import annotations

import logging

import torch
from recbole.model.abstract_recommender import SequentialRecommender
from recbole.utils import InputType

from ..core.batching import pad_rows
from ..core.beam_search import title_scores, token_log_probs
from ..core.losses import ATS_STATISTICS_SIZE, ats_estimate, ats_update
from ..core.sequences import context_of
from ..core.subtree_mass import SubtreeRanges
from ..core.trie import TokenTrie
from ..errors import ConfigError, DataMismatchError
from ..item_text import item_titles
from ..lm.adapter_io import BACKBONE_PREFIX, load_adapter_weights, load_backbone_weights, write_adapter
from ..lm.backbone import load_backbone, wrap_with_lora
from ..lm.common_prefix import common_prefix_length, decode_right_padded
from ..lm.fingerprint import fingerprint_difference, weights_fingerprint
from ..lm.head import head_logits
from ..lm.prompt import DEFAULT_TEMPLATE, PromptBuilder
from .decoders import DECODERS
from .objectives import OBJECTIVES
from .options import FULL_RANKING_METRICS, LLMMSLOptions

logger = logging.getLogger(__name__)


class LLMMSL(SequentialRecommender):
    input_type = InputType.POINTWISE
    unsupported_metrics = FULL_RANKING_METRICS  # beam search scores only the items it reaches
    excludes_in_search = True  # eval_exclude_seen passes each row's seen items to full_sort_predict (evaluation/protocol)

    def __init__(self, config, dataset):
        super().__init__(config, dataset)
        self.opts = LLMMSLOptions.from_config(config)
        self.tau = self.opts.tau_init
        self.ats_pending = torch.zeros(ATS_STATISTICS_SIZE, dtype=torch.float64)  # this step's ATS sums

        self.titles = item_titles(config, dataset)
        backbone, self.tokenizer = load_backbone(self.opts.backbone, self.device)
        self.backbone_fingerprint = weights_fingerprint(backbone)  # saved with the adapter, checked on loading it
        self.llm = wrap_with_lora(backbone, self.opts.lora, self.opts.backbone.gradient_checkpointing)
        window = getattr(backbone.config, "max_position_embeddings", None)
        if self.opts.max_seq_length and window and self.opts.max_seq_length > window:
            raise ConfigError(f"max_seq_length {self.opts.max_seq_length} exceeds the backbone's context of {window} "
                              f"tokens; set max_seq_length to at most {window} (or ~ for the backbone's context)")
        context = self.opts.max_seq_length or window or 2048
        self.prompts = PromptBuilder(self.tokenizer, self.titles, config["prompt_template"] or DEFAULT_TEMPLATE,
                                     config["prompt_instruction"], config["prompt_input"], int(context),
                                     train_format=self.opts.train_format)
        if self.opts.train_format == "sequence":
            self.prompts.check_sequence_fits(self.opts.sequence_min_history)
        sequences, items = self.prompts.sequences()
        self.trie = TokenTrie.build(sequences, items, self.n_items).to(self.device)
        if self.opts.train_format == "sequence":
            self._check_titles_end()
        self.pad_id = self.tokenizer.pad_token_id
        self.on_users_ranked = None  # progress callback: called with the number of users each decoding batch ranked
        self.assistant = None  # a RecBole sequential model guiding the search (attach_assistant)
        self.assistant_record: dict | None = None
        self.assistant_weight = 0.0  # the weight ranking uses now (the trainer walks assistant_weight's grid)
        self._subtree_ranges: SubtreeRanges | None = None

    def _check_titles_end(self) -> None:
        """In a list a title ends with the separator's first token; refuse a title whose path that token continues
        into another title (the search could not tell where it ends)."""
        inner = self.trie.inner_leaves()
        if inner.numel():
            items, _ = self.trie.items_of_leaves(inner[:1])
            raise ConfigError(f"{inner.numel()} titles are, with the separator's first token after them, the start of "
                              f"another title (e.g. {self.titles[int(items[0])]!r}); use train_format: window for "
                              f"this data set")

    def __str__(self):
        """A short summary instead of the full module tree of an LLM (RecBole logs str(model))."""
        total = sum(p.numel() for p in self.parameters())
        trainable = sum(p.numel() for p in self.parameters() if p.requires_grad)
        return (f"LLMMSL(backbone={type(self.base).__name__} from {self.base.config.name_or_path or 'gguf'}, "
                f"{total / 1e6:.1f}M parameters, LoRA on {sorted(self.llm.peft_config['default'].target_modules)}"
                f"{' + every backbone weight' if self.opts.lora.finetune == 'full' else ''}, "
                f"loss={self.opts.loss}, tau={'ats' if self.opts.adaptive_tau else self.tau}, "
                f"trie: {self.trie.num_leaves} titles, {self.trie.num_nodes} nodes, depth {self.trie.max_depth})"
                f"\nTrainable parameters: {trainable}")

    # ------------------------------------------------------------ assistant
    def attach_assistant(self, assistant, record: dict) -> None:
        """Let ``assistant`` (frozen, on this model's device) guide ranking; the weight stays 0 until set."""
        self.assistant = assistant.to(self.device)
        self.assistant_record = record

    @property
    def guided(self) -> bool:
        """True when ranking fuses the assistant's distribution (a weight other than 0, or no LLM term)."""
        return self.assistant is not None and (self.assistant_weight != 0 or self.opts.llm_weight != 1)

    @torch.no_grad()
    def assistant_log_probs(self, histories: list[list[int]]) -> torch.Tensor:
        """[U, n_items] float64: log softmax of the assistant's full-sort scores / ``assistant_temperature``,
        from the same (truncated) histories the prompts list; the padding item gets -inf."""
        from recbole.data.interaction import Interaction

        width = max(len(h) for h in histories)
        seq = torch.zeros(len(histories), width, dtype=torch.long, device=self.device)
        for row, history in enumerate(histories):
            seq[row, :len(history)] = torch.as_tensor(history, dtype=torch.long)
        lengths = torch.tensor([len(h) for h in histories], dtype=torch.long, device=self.device)
        scores = self.assistant.full_sort_predict(Interaction({self.ITEM_SEQ: seq, self.ITEM_SEQ_LEN: lengths}))
        scores = scores.view(len(histories), -1).double() / self.opts.assistant_temperature
        scores[:, 0] = float("-inf")
        return scores.log_softmax(-1)

    def masses(self, histories):
        if self._subtree_ranges is None:
            self._subtree_ranges = SubtreeRanges.of(self.trie)
        return self._subtree_ranges.masses(self.assistant_log_probs(histories))

    @torch.no_grad()
    def search_overlap(self, histories: list[list[int]], k: int) -> torch.Tensor:
        """Per history, how many of the assistant's own full-sort top ``k`` items the (guided) search's top ``k``
        holds: with ``llm_weight`` 0, the search error that ranking through the title trie costs the assistant."""
        ranked = self.rank(histories).topk(k, dim=1)
        found = [{i for i, v in zip(items, values) if v != float("-inf")}
                 for items, values in zip(ranked.indices.tolist(), ranked.values.tolist())]
        own = self.assistant_log_probs(histories).topk(k, dim=1).indices.tolist()
        return torch.tensor([len(mine & set(theirs)) for mine, theirs in zip(found, own)], dtype=torch.float64)

    def _assistant_title_terms(self, histories, items: list[int]) -> torch.Tensor:
        """assistant_weight * log(p_a(the item's title's items) / p_a(items with a title)) per row, by a direct sum
        over the items (no trie ranges: it checks the search's subtree masses)."""
        probs = self.assistant_log_probs(histories).exp()  # [B, n_items]
        leaf = self.trie.item_leaf
        titled = leaf >= 0
        per_leaf = probs.new_zeros(len(items), self.trie.num_leaves).index_add_(1, leaf[titled], probs[:, titled])
        item_leaf = leaf[torch.as_tensor(items, dtype=torch.long, device=self.device)].clamp(min=0)
        mass = per_leaf.gather(1, item_leaf.unsqueeze(1)).squeeze(1)
        share = mass.clamp(min=torch.finfo(torch.float64).tiny) / per_leaf.sum(1)
        return (self.assistant_weight * share.log()).float()

    # ------------------------------------------------------------ plumbing
    @property
    def base(self):
        """The causal LM with LoRA layers injected (peft's wrapper bypassed)."""
        return self.llm.get_base_model()

    def _apply(self, fn, *args, **kwargs):
        out = super()._apply(fn, *args, **kwargs)
        probe = next(self.llm.parameters())
        if self.trie.child_ptr.device != probe.device:
            self.trie = self.trie.to(probe.device)
        return out

    def _histories(self, interaction) -> list[list[int]]:
        seqs = interaction[self.ITEM_SEQ].tolist()
        lengths = interaction[self.ITEM_SEQ_LEN].tolist()
        return [s[:n][-self.opts.history_length:] for s, n in zip(seqs, lengths)]

    def ranking_prompt(self, history: list[int]) -> list[int]:
        """The prompt that ranks titles after ``history``: its last ``eval_history`` titles (the assistant, if
        any, reads the whole history RecBole keeps)."""
        return self.prompts.prompt(history[-self.opts.eval_history:])

    def pad(self, rows: list[list[int]], left: bool):
        return pad_rows(rows, self.pad_id, left, self.device)

    # ---------------------------------------------------- teacher forcing
    def _response_states(self, histories, targets, ranking: bool = False):
        """Hidden states at the positions that predict each response token (``ranking``: after the ranking prompt).

        Returns (hidden [P, d], target tokens [P], trie node before each token [P], sample index [P]),
        positions ordered by sample then by token. LM-head logits are never computed here.
        """
        prompts = [self.ranking_prompt(h) if ranking else self.prompts.prompt(h) for h in histories]
        responses = [self.prompts.response(t) for t in targets]
        hidden, shared = decode_right_padded(self.base.get_decoder(), [p + r[:-1] for p, r in zip(prompts, responses)],
                                             self.pad_id, self.opts.share_prompt_prefix,
                                             limit=min(len(p) for p in prompts) - 1)  # [B, T - shared, d]
        return self._path_states(hidden, shared, list(range(len(prompts))), [len(p) for p in prompts], responses)

    def _packed_states(self, chunks: list[list[int]]):
        """Hidden states at the positions that predict each target title's tokens in packed chunks.

        Returns what :meth:`_response_states` returns, with one "sample" per target title (so ATS finds each
        target's title choice): every target's tokens are its trie path, read by a trie walk that starts
        at the root for each title. Causal attention makes each position see exactly the chunk before it.
        """
        packed = [self.prompts.pack(chunk, context_of(chunk, self.opts.sequence_min_history)) for chunk in chunks]
        head = len(self.prompts.head_ids)
        hidden, shared = decode_right_padded(self.base.get_decoder(), [p.ids[:-1] for p in packed], self.pad_id,
                                             self.opts.share_prompt_prefix, limit=head)  # [B, T - shared, d]
        rows, starts, paths = [], [], []
        for row, chunk in enumerate(packed):
            for item, start in zip(chunk.items, chunk.starts):
                rows.append(row)
                starts.append(start)
                paths.append(self.prompts.response(item))
        return self._path_states(hidden, shared, rows, starts, paths)

    def _path_states(self, hidden, shared: int, rows: list[int], starts: list[int], paths: list[list[int]]):
        """(hidden [P, d], tokens [P], trie node before each token [P], path index [P]) at the positions that predict
        each trie path's tokens: path k fills row ``rows[k]`` of ``hidden`` [B, T - shared, d] from ``starts[k]``."""
        path_len = torch.tensor([len(p) for p in paths], device=self.device)
        tokens, _ = self.pad(paths, left=False)  # [N, R]
        nodes = self.trie.path(tokens, path_len)  # [N, R]
        offsets = torch.arange(tokens.size(1), device=self.device)
        live = offsets < path_len.unsqueeze(1)  # [N, R]
        target = torch.arange(len(paths), device=self.device).unsqueeze(1).expand_as(tokens)[live]  # [P]
        row = torch.tensor(rows, device=self.device)[target]  # [P]
        position = (torch.tensor(starts, device=self.device).unsqueeze(1) - 1 - shared + offsets)[live]  # [P]
        return hidden[row, position], tokens[live], nodes[live], target

    def head(self, hidden, tokens=None):
        """LM-head logits of ``hidden`` [P, d]: all tokens ([P, V]), or only ``tokens`` [P, K] ([P, K])."""
        return head_logits(self.base, hidden, tokens)

    def valid_sets(self, nodes, targets):
        """Padded valid tokens of each node and the column of its target."""
        edges, valid = self.trie.children_padded(nodes)  # [P, D]
        tokens = self.trie.edge_token[edges]
        target_index = ((tokens == targets.unsqueeze(1)) & valid).long().argmax(1)
        return tokens, valid, target_index

    # -------------------------------------------------------------- losses
    def loss_terms(self, batch):
        """(sum of per-position losses, number of positions) for a batch: RecBole's windows (an Interaction), or
        in the sequence format a list of chunks (item-id lists, :mod:`recbole_msl.core.sequences`).

        Under ATS a training pass also adds its statistics to :attr:`ats_pending`; tau changes only
        in :meth:`end_ats_step`, once per optimizer step.
        """
        if self.opts.train_format == "sequence":
            hidden, targets, nodes, sample = self._packed_states(batch)
        else:
            hidden, targets, nodes, sample = self._response_states(
                self._histories(batch), batch[self.POS_ITEM_ID].tolist())
        return OBJECTIVES[self.opts.loss].terms(self, hidden, targets, nodes, sample)

    @property
    def uses_tau(self) -> bool:
        """Whether the objective has a temperature (the trainer logs tau and its ATS trace only then)."""
        return OBJECTIVES[self.opts.loss].uses_tau

    def end_ats_step(self, all_reduce=None) -> dict:
        """Close an optimizer step: one ATS update from the statistics of all its micro-batches.

        ``all_reduce`` (the trainer's, under torchrun) sums the statistics over processes first, so
        every rank reaches the same tau. The authors update tau once per optimizer step from the
        statistics of that step's batch, pooled over GPUs. Here the step's loss used the tau estimated
        through the previous step (a one-step lag): the statistics are complete only after the last
        micro-batch, and an extra forward pass to remove the lag would cost about a third of a step.
        Returns this step's record: the tau it used and, under ATS, the estimate (raw and clamped,
        delta, var, m).
        """
        record = {"tau": float(self.tau)}
        if not self.uses_tau or not self.opts.adaptive_tau:
            return record
        stats, self.ats_pending = self.ats_pending, torch.zeros_like(self.ats_pending)
        if all_reduce is not None:
            stats = all_reduce(stats)
        estimate = ats_estimate(stats, self.opts.ats_eta, self.opts.ats_range)
        self.tau = ats_update(self.tau, estimate, self.opts.ats_alpha)
        return {**record, **(estimate.as_dict() if estimate else {})}

    def calculate_loss(self, interaction):
        total, count = self.loss_terms(interaction)
        return total / max(count, 1)

    # ------------------------------------------------------------- scoring
    def predict(self, interaction):
        """Exact score of each (history, item) pair: the score beam search gives that title."""
        items = interaction[self.ITEM_ID].tolist()
        histories = self._histories(interaction)
        scores = torch.full((len(items),), float("-inf"), device=self.device)
        known = [i for i, item in enumerate(items) if self.prompts.title_ids[item] is not None]
        if self.guided and not self.opts.trains_llm:  # the assistant alone: no LLM term
            if known:
                rows = torch.tensor(known, device=self.device)
                scores[rows] = self._assistant_title_terms([histories[i] for i in known], [items[i] for i in known])
            return scores
        for start in range(0, len(known), self.opts.eval_micro_batch_size):
            rows = known[start:start + self.opts.eval_micro_batch_size]
            hidden, targets, nodes, sample = self._response_states([histories[i] for i in rows],
                                                                    [items[i] for i in rows], ranking=True)
            tokens, valid, target_index = self.valid_sets(nodes, targets)  # [P, D]
            if self.opts.renormalize:
                log_probs = token_log_probs(self.head(hidden, tokens), valid, None)
            else:  # the full-vocabulary softmax, as in the search
                logits = self.head(hidden).float()  # [P, V]
                log_probs = token_log_probs(logits.gather(1, tokens), valid, logits.logsumexp(-1, keepdim=True))
            chosen = log_probs.gather(1, target_index.unsqueeze(1)).squeeze(1)  # [P]
            row_scores = title_scores(chosen, sample, len(rows), self.opts.length_penalty)
            if self.guided:  # the same fusion as the search: weighted LLM title score + weighted assistant term
                if self.opts.llm_weight != 1:
                    row_scores = row_scores * self.opts.llm_weight
                row_scores = row_scores + self._assistant_title_terms([histories[i] for i in rows],
                                                                      [items[i] for i in rows])
            scores[torch.tensor(rows, device=self.device)] = row_scores
        return scores

    def full_sort_predict(self, interaction, exclude: list[list[int]] | None = None):
        """[B, n_items] scores from constrained beam search; items no beam reached get -inf (never hits:
        :mod:`recbole_msl.evaluation.protocol`). ``exclude``: item ids per row kept out inside the search
        (``eval_exclude_seen``), so the beams are spent on other titles."""
        return self.rank(self._histories(interaction), exclude)

    def rank(self, histories: list[list[int]], exclude: list[list[int]] | None = None):
        """[B, n_items] beam-search scores for item-id histories (oldest first); -inf for items not reached.

        ``exclude`` (item ids per history) keeps those items out inside the search, so ``num_beams``
        other titles come back; RecBole's evaluation excludes nothing (its sequential protocol, as for SASRec)
        unless ``eval_exclude_seen`` is set, which passes each user's earlier items here.
        """
        scores = torch.full((len(histories), self.n_items), float("-inf"), device=self.device)
        step = self.opts.decode_batch_size
        for start in range(0, len(histories), step):
            chunk = histories[start:start + step]
            prompts = [self.ranking_prompt(h) for h in chunk]
            shared = common_prefix_length(prompts) if self.opts.share_prompt_prefix else 0
            excluded = None if exclude is None else self.trie.excluded_nodes(exclude[start:start + step])
            beam_scores, leaves = DECODERS[self.opts.decoder].search(self, chunk, prompts, shared, excluded)
            found = leaves >= 0  # [U, K]
            rows = torch.arange(len(chunk), device=self.device).unsqueeze(1).expand_as(leaves)[found]
            items, owner = self.trie.items_of_leaves(leaves[found])
            scores[start + rows[owner], items] = beam_scores[found][owner]
            if exclude is not None:  # a kept title may also spell an excluded item
                for row, items_out in enumerate(exclude[start:start + step]):
                    scores[start + row, torch.as_tensor(list(items_out), dtype=torch.long)] = float("-inf")
            if self.on_users_ranked is not None:
                self.on_users_ranked(len(chunk))
        return scores

    def forward(self, item_seq, item_seq_len):  # pragma: no cover - RecBole contract, unused
        raise NotImplementedError("LLMMSL scores items by decoding titles; use predict/full_sort_predict")

    # -------------------------------------------------------------- state
    def other_parameter(self):
        return {"tau": float(self.tau)}

    def load_other_parameter(self, para):
        if para and "tau" in para:
            self.tau = float(para["tau"])

    def save_adapter(self, folder: str) -> None:
        """The LoRA weights as a peft adapter folder (what :meth:`load_trainable_state_dict` reads back); under
        ``llm_finetune: full`` the backbone's weights too."""
        write_adapter(self.llm, folder, full=self.opts.lora.finetune == "full")

    def check_backbone(self, saved: dict | None, folder: str, saved_path) -> None:
        """Refuse a checkpoint trained on another backbone than the one loaded (another model of the same
        architecture would take the adapter and rank, silently wrong); warn when it records none."""
        if not saved:
            logger.warning(f"checkpoint {folder} records no fingerprint of its backbone (saved before they were "
                           f"recorded): it is applied to {self.opts.backbone.llm_path or 'the default backbone'} "
                           f"unchecked")
            return
        difference = fingerprint_difference(saved, self.backbone_fingerprint)
        if difference is not None:
            fix = f"--llm_path={saved_path} (its backbone)" if saved_path else "--llm_path=~ (the default backbone)"
            raise DataMismatchError(f"checkpoint {folder} was trained on another backbone than llm_path "
                                    f"{self.opts.backbone.llm_path or '~ (the default)'} ({difference}); pass "
                                    f"{fix} or retrain")

    def load_trainable_state_dict(self, state):
        if self.opts.lora.finetune != "full" and any(k.startswith(BACKBONE_PREFIX) for k in state):
            raise ConfigError("the checkpoint holds a fully fine-tuned backbone; load it with llm_finetune: full")
        state, unexpected = load_backbone_weights(self.llm, state)
        unexpected += load_adapter_weights(self.llm, state)
        if unexpected:
            raise ConfigError(f"checkpoint has {len(unexpected)} weights this model lacks (e.g. {unexpected[0]}); "
                              f"load it with the backbone and lora settings it was trained with")
