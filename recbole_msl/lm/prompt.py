"""Prompts and responses as token ids.

The template is the instruction format of BIGRec/MSL ("Below is an instruction
... ### Instruction: ... ### Input: ... ### Response:"). A prompt is the text of
the template with the quoted history titles filled in, tokenized as one string,
so its ids are the tokenizer's own (a pretrained model has never seen a quote
tokenized apart from the colon and space before it). The response is the quoted
target title followed by EOS, tokenized on its own: these are the ids of the
title trie, and the ids the tokenizer gives the response after the prompt text.

The sequence format (``train_format: sequence``) lists a user's titles in the same template but writes
them as ids: the template's text before the ``{history}`` slot tokenized alone, then each title's own
trie ids (the quoted title with the separator's space before it, tokenized alone, as the tokenizer
writes it inside a list) followed by the separator's comma. The comma is the title's last trie token,
as EOS is in the window format, so training targets are exactly trie paths and a ranking prompt (the
same list, ending with a comma) asks for the next title with the token boundaries training used.
"""

from __future__ import annotations

from dataclasses import dataclass

from ..errors import ConfigError

DEFAULT_TEMPLATE = (
    "Below is an instruction that describes a task, paired with an input that provides further context. "
    "Write a response that appropriately completes the request.\n\n"
    "### Instruction:\n{instruction}\n\n### Input:\n{input}\n\n### Response:\n"
)


TRAIN_FORMATS = ("window", "sequence")


def quote(title: str) -> str:
    return f'"{title}"'


@dataclass(frozen=True)
class PackedSequence:
    """One chunk of a user's titles as token ids, and where its target titles sit.

    ``ids`` is the whole chunk (its last token is the last title's end token). Target ``k`` is the item
    ``items[k]`` whose trie path (title ids + end token) fills ``ids[starts[k]:starts[k] + len(path)]``.
    """

    ids: list[int]
    items: list[int]
    starts: list[int]


class PromptBuilder:
    """Token ids of prompts (history titles) and responses (target title + EOS)."""

    def __init__(self, tokenizer, titles: list[str | None], template: str, instruction: str,
                 input_text: str, max_length: int, separator: str = ", ", train_format: str = "window"):
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
        # in a list, each title carries the separator's trailing space ("," + ' "Title"'), so every title has the
        # same ids wherever it stands, and the ids are those the tokenizer gives the list's text
        glue = separator.rstrip()
        lead = separator[len(glue):] if train_format == "sequence" else ""
        if train_format == "sequence" and not glue:
            raise ConfigError(f"the separator {separator!r} has no visible character to end a title with")
        encoded = tokenizer([lead + self.quoted[i] for i in present], add_special_tokens=False)["input_ids"]
        self.title_ids: list[list[int] | None] = [None] * len(titles)
        for i, ids in zip(present, encoded):
            self.title_ids[i] = list(ids)
        self.max_response = max(len(ids) for ids in encoded) + 1
        self.max_prompt = max_length - self.max_response
        self.max_length = max_length
        self.format = train_format
        self.separator_ids = list(tokenizer(glue if lead else separator, add_special_tokens=False)["input_ids"])
        head = self.head[:-len(lead)] if lead and self.head.endswith(lead) else self.head
        self.head_ids = list(tokenizer(head, add_special_tokens=True)["input_ids"])
        # what ends a title: EOS after the response, the separator's first token (the comma) inside a list
        self.end = self.separator_ids[0] if train_format == "sequence" else self.eos
        if train_format == "window":
            self._check_window_fits(present, max_length)

    def _check_window_fits(self, present: list[int], max_length: int) -> None:
        """The template with the longest title once in the history, and once as the response (+ EOS)."""
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
        """The ids the model writes for ``item``: its title's trie path (title ids + EOS, or + the end token
        in the sequence format)."""
        return self.title_ids[item] + [self.end]

    def prompt(self, history: list[int]) -> list[int]:
        """Prompt ids for a history (oldest first); the oldest titles go first when it is too long.

        Keeps the longest suffix of the history whose prompt fits ``max_prompt`` tokens. The first
        guess comes from the titles' own token counts; the text is then tokenized whole to check it.
        """
        if self.format == "sequence":
            return self._listed(history)
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
                by_ids.setdefault(tuple(self.response(item)), []).append(item)
        return [list(k) for k in by_ids], list(by_ids.values())

    # ------------------------------------------------------------------ the sequence format
    def listed_cost(self, item: int) -> int:
        """Tokens ``item`` takes in a packed list: its title ids and the separator's comma."""
        return len(self.title_ids[item]) + len(self.separator_ids)

    def _listed(self, history: list[int]) -> list[int]:
        """A ranking prompt in the sequence format: the head and the listed titles, each followed by the separator,
        keeping the most recent titles that leave room for the longest response."""
        start, spent = len(history), len(self.head_ids)
        while start > 0 and spent + self.listed_cost(history[start - 1]) <= self.max_prompt:
            start -= 1
            spent += self.listed_cost(history[start])
        start = min(start, len(history) - 1)  # one title at least (the constructor checked that one fits)
        return self.head_ids + [t for i in history[start:] for t in self.title_ids[i] + self.separator_ids]

    def pack(self, items: list[int], min_history: int) -> PackedSequence:
        """The chunk ``items`` as one id list; every title after the first ``min_history`` is a target."""
        ids, targets, starts = list(self.head_ids), [], []
        for k, item in enumerate(items):
            if k >= min_history:
                targets.append(item)
                starts.append(len(ids))
            ids += self.title_ids[item]
            ids += self.separator_ids if k < len(items) - 1 else [self.end]
        return PackedSequence(ids, targets, starts)

    def check_sequence_fits(self, min_history: int) -> None:
        """One-line error before any training when a chunk with one target cannot fit the context."""
        longest = max(self.listed_cost(i) for i, ids in enumerate(self.title_ids) if ids is not None)
        need = len(self.head_ids) + (min_history + 1) * longest
        if need > self.max_length:
            raise ConfigError(f"train_format sequence needs {need} tokens for {min_history + 1} of the longest titles "
                              f"but the context is {self.max_length}; raise max_seq_length to at least {need}, lower "
                              f"sequence_min_history, or use train_format: window")
