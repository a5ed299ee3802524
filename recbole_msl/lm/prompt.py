"""Prompts and responses as token ids.

The template is the instruction format of BIGRec/MSL ("Below is an instruction
... ### Instruction: ... ### Input: ... ### Response:"). A prompt is the text of
the template with the quoted history titles filled in, tokenized as one string,
so its ids are the tokenizer's own (a pretrained model has never seen a quote
tokenized apart from the colon and space before it). The response is the quoted
target title followed by EOS, tokenized on its own: these are the ids of the
title trie, and the ids the tokenizer gives the response after the prompt text.
"""

from __future__ import annotations

from ..errors import ConfigError

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
        self.tokenizer = tokenizer
        text = template.replace("{instruction}", instruction).replace("{input}", input_text)
        self.head, self.tail = text.split("{history}", 1)
        self.separator = separator
        self.eos = tokenizer.eos_token_id
        if self.eos is None:
            raise ConfigError("the tokenizer has no eos_token; pick a backbone whose tokenizer defines one")
        self.quoted = [None if t is None else quote(t) for t in titles]
        present = [i for i, t in enumerate(self.quoted) if t is not None]
        encoded = tokenizer([self.quoted[i] for i in present], add_special_tokens=False)["input_ids"]
        self.title_ids: list[list[int] | None] = [None] * len(titles)
        for i, ids in zip(present, encoded):
            self.title_ids[i] = list(ids)
        self.max_response = max(len(ids) for ids in encoded) + 1
        self.max_prompt = max_length - self.max_response
        # the template with the longest title once in the history, and once as the response (+ EOS)
        longest = max(present, key=lambda i: len(self.title_ids[i]))
        need = len(self._encode([longest])) + self.max_response
        if need > max_length:
            raise ConfigError(f"the prompt template with one history title and the response does not fit the "
                              f"context of {max_length} tokens (it needs {need}); raise max_seq_length to at least "
                              f"{need} or shorten prompt_template")

    def text(self, history: list[int]) -> str:
        """The prompt text for a history (oldest first)."""
        return self.head + self.separator.join(self.quoted[i] for i in history) + self.tail

    def _encode(self, history: list[int]) -> list[int]:
        return self.tokenizer(self.text(history), add_special_tokens=True)["input_ids"]

    def response(self, item: int) -> list[int]:
        return self.title_ids[item] + [self.eos]

    def prompt(self, history: list[int]) -> list[int]:
        """Prompt ids for a history (oldest first); the oldest titles go first when it is too long.

        Keeps the longest suffix of the history whose prompt fits ``max_prompt`` tokens. The first
        guess comes from the titles' own token counts; the text is then tokenized whole to check it.
        """
        ids = self._encode(history)
        if len(ids) <= self.max_prompt:
            return ids
        over, start = len(ids) - self.max_prompt, 0
        while start < len(history) - 1 and over > 0:  # guess: drop titles until their tokens cover the excess
            over -= len(self.title_ids[history[start]]) + 1
            start += 1
        ids = self._encode(history[start:])
        while len(ids) > self.max_prompt and start < len(history) - 1:
            start += 1
            ids = self._encode(history[start:])
        while start > 0:  # the guess may have dropped one title too many
            longer = self._encode(history[start - 1:])
            if len(longer) > self.max_prompt:
                break
            start, ids = start - 1, longer
        return ids

    def sequences(self):
        """(token sequences, item ids per sequence) of every distinct response, for the trie."""
        by_ids: dict[tuple, list[int]] = {}
        for item, ids in enumerate(self.title_ids):
            if ids is not None:
                by_ids.setdefault(tuple(ids) + (self.eos,), []).append(item)
        return [list(k) for k in by_ids], list(by_ids.values())
