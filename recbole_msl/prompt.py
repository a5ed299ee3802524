"""Prompts and responses as token ids, assembled from pre-tokenized pieces.

The template is the instruction format of BIGRec/MSL ("Below is an instruction
... ### Instruction: ... ### Input: ... ### Response:"). The prompt text is cut
at its ``{history}`` slot; the two template halves, the separator and every
quoted title are tokenized once, and a sample's ids are the concatenation. The
response is the quoted target title followed by EOS, tokenized on its own, so
the ids the model is trained on are exactly the ids of the title trie.
"""

from __future__ import annotations

from .errors import ConfigError

DEFAULT_TEMPLATE = (
    "Below is an instruction that describes a task, paired with an input that provides further context. "
    "Write a response that appropriately completes the request.\n\n"
    "### Instruction:\n{instruction}\n\n### Input:\n{input}\n\n### Response:\n"
)


def quote(title: str) -> str:
    return f'"{title}"'


class PromptBuilder:
    """Token ids of prompts (history titles) and responses (target title + EOS)."""

    def __init__(self, tokenizer, titles: list[str | None], template: str, instruction: str,
                 input_text: str, max_length: int, separator: str = ", "):
        if "{history}" not in input_text:
            raise ConfigError("prompt_input must contain the {history} slot for the quoted titles")
        text = template.replace("{instruction}", instruction).replace("{input}", input_text)
        head, tail = text.split("{history}", 1)
        self.head = tokenizer(head, add_special_tokens=True)["input_ids"]
        self.tail = tokenizer(tail, add_special_tokens=False)["input_ids"]
        self.separator = tokenizer(separator, add_special_tokens=False)["input_ids"]
        self.eos = tokenizer.eos_token_id
        if self.eos is None:
            raise ConfigError("the tokenizer has no eos_token; pick a backbone whose tokenizer defines one")
        present = [i for i, t in enumerate(titles) if t is not None]
        encoded = tokenizer([quote(titles[i]) for i in present], add_special_tokens=False)["input_ids"]
        self.title_ids: list[list[int] | None] = [None] * len(titles)
        for i, ids in zip(present, encoded):
            self.title_ids[i] = list(ids)
        self.max_response = max(len(ids) for ids in encoded) + 1
        self.max_prompt = max_length - self.max_response
        # the template, the longest title once in the history and once as the response (+ EOS)
        need = len(self.head) + len(self.tail) + 2 * self.max_response - 1
        if need > max_length:
            raise ConfigError(f"the prompt template with one history title and the response does not fit the "
                              f"context of {max_length} tokens (it needs {need}); raise max_seq_length to at least "
                              f"{need} or shorten prompt_template")

    def response(self, item: int) -> list[int]:
        return self.title_ids[item] + [self.eos]

    def prompt(self, history: list[int]) -> list[int]:
        """Prompt ids for a history (oldest first); the oldest items go first when it is too long."""
        pieces = [self.title_ids[i] for i in history]
        budget = self.max_prompt - len(self.head) - len(self.tail)
        sizes = [len(p) + len(self.separator) for p in pieces]
        total = sum(sizes) - (len(self.separator) if pieces else 0)
        start = 0
        while start < len(pieces) and total > budget:
            total -= sizes[start]
            start += 1
        ids = list(self.head)
        for k, piece in enumerate(pieces[start:]):
            if k:
                ids.extend(self.separator)
            ids.extend(piece)
        ids.extend(self.tail)
        return ids

    def sequences(self):
        """(token sequences, item ids per sequence) of every distinct response, for the trie."""
        by_ids: dict[tuple, list[int]] = {}
        for item, ids in enumerate(self.title_ids):
            if ids is not None:
                by_ids.setdefault(tuple(ids) + (self.eos,), []).append(item)
        return [list(k) for k in by_ids], list(by_ids.values())
