"""Prompt ids are the tokenizer's own ids of the prompt text, for the main tokenizer families.

Tokenizers are trained here on a small corpus (no download): a GPT-2-style byte-level BPE, a
Qwen2-style byte-level BPE with Qwen's split pattern, and a Llama-2-style sentencepiece BPE
with byte fallback and a BOS token, next to the real SmolLM2 tokenizer.
"""

import pytest
from tokenizers import Regex, Tokenizer, decoders, models, normalizers, pre_tokenizers, processors, trainers
from transformers import PreTrainedTokenizerFast

from recbole_msl.lm.prompt import DEFAULT_TEMPLATE, PromptBuilder, quote

TITLES = [None, "Toy Story (1995)", 'He Said "Hi", Then Left', "Don't Look Now", "Amélie", "東京物語",
          "Война и мир", "Heat", "Sense, and Sensibility", "'Til There Was You", '"Quoted" Start', "12 Angry Men"]
HISTORIES = [[1], [2, 3], [4, 5, 6, 7], [8, 9, 10, 11, 1], [11, 10, 9, 8, 7, 6, 5, 4, 3, 2, 1]]
QWEN_PATTERN = (r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*"
                r"|\s*[\r\n]+|\s+(?!\S)|\s+")
CORPUS = [DEFAULT_TEMPLATE, "The user watched the following movies before: ", *[quote(t) for t in TITLES[1:]]] * 3


def _byte_level(pattern=None):
    tok = Tokenizer(models.BPE())
    if pattern:  # Qwen2 / Llama-3: a regex split, then bytes
        tok.pre_tokenizer = pre_tokenizers.Sequence([pre_tokenizers.Split(Regex(pattern), behavior="isolated"),
                                                     pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)])
    else:  # GPT-2
        tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    tok.train_from_iterator(CORPUS, trainers.BpeTrainer(vocab_size=500, special_tokens=["<|endoftext|>"],
                                                        initial_alphabet=pre_tokenizers.ByteLevel.alphabet()))
    return PreTrainedTokenizerFast(tokenizer_object=tok, eos_token="<|endoftext|>")


def _sentencepiece():
    """Llama-2 style: spaces become '▁', a '▁' is prepended, unknown bytes fall back to <0x..>, BOS first."""
    tok = Tokenizer(models.BPE(byte_fallback=True, unk_token="<unk>", fuse_unk=True))
    tok.normalizer = normalizers.Sequence([normalizers.Prepend("▁"), normalizers.Replace(" ", "▁")])
    tok.decoder = decoders.Sequence([decoders.Replace("▁", " "), decoders.ByteFallback(), decoders.Fuse(),
                                     decoders.Strip(" ", 1, 0)])
    specials = ["<unk>", "<s>", "</s>"] + [f"<0x{i:02X}>" for i in range(256)]
    tok.train_from_iterator(CORPUS, trainers.BpeTrainer(vocab_size=600, special_tokens=specials))
    tok.post_processor = processors.TemplateProcessing(single="<s> $A", special_tokens=[("<s>", 1)])
    return PreTrainedTokenizerFast(tokenizer_object=tok, bos_token="<s>", eos_token="</s>", unk_token="<unk>")


@pytest.fixture(scope="module", params=["gpt2", "qwen2", "llama-sentencepiece", "smollm2"])
def tokenizer(request, smol_tokenizer):
    return {"gpt2": _byte_level, "qwen2": lambda: _byte_level(QWEN_PATTERN), "llama-sentencepiece": _sentencepiece,
            "smollm2": lambda: smol_tokenizer}[request.param]()


def _builder(tokenizer, max_length=4096):
    return PromptBuilder(tokenizer, TITLES, DEFAULT_TEMPLATE, "Recommend a movie.",
                         "The user watched the following movies before: {history}", max_length)


@pytest.mark.parametrize("history", HISTORIES)
def test_prompt_ids_are_the_tokenizers_ids_of_the_prompt_text(tokenizer, history):
    builder = _builder(tokenizer)
    text = builder.text(history)
    assert text.endswith("### Response:\n") and ", ".join(quote(TITLES[i]) for i in history) in text
    assert builder.prompt(history) == tokenizer(text)["input_ids"]


def test_responses_are_the_titles_tokenized_alone_and_end_with_eos(tokenizer):
    builder = _builder(tokenizer)
    for item, title in enumerate(TITLES):
        if title is not None:
            assert builder.response(item) == tokenizer(quote(title), add_special_tokens=False)["input_ids"] + [
                tokenizer.eos_token_id]


def test_truncated_prompts_are_tokenized_whole_too(tokenizer):
    history = HISTORIES[-1]
    full = len(_builder(tokenizer).prompt(history))
    builder = _builder(tokenizer, max_length=full + _builder(tokenizer).max_response - 12)
    ids = builder.prompt(history)
    kept = next(history[s:] for s in range(len(history)) if len(tokenizer(builder.text(history[s:]))["input_ids"])
                <= builder.max_prompt)
    assert len(kept) < len(history) and ids == tokenizer(builder.text(kept))["input_ids"]


def test_smollm2_splits_pieces_differently_from_the_whole_prompt(smol_tokenizer):
    """Why the prompt is tokenized whole: the concatenation of separately tokenized pieces differs."""
    builder = _builder(smol_tokenizer)
    history = HISTORIES[2]
    pieces = smol_tokenizer(builder.head)["input_ids"]
    for k, item in enumerate(history):
        pieces += smol_tokenizer((", " if k else "") + quote(TITLES[item]), add_special_tokens=False)["input_ids"]
    pieces += smol_tokenizer(builder.tail, add_special_tokens=False)["input_ids"]
    assert smol_tokenizer.decode(pieces) == smol_tokenizer.decode(builder.prompt(history))  # same text
    assert pieces != builder.prompt(history)  # different ids


def test_smollm2_gives_the_response_the_trie_ids_after_the_prompt(smol_tokenizer):
    """The response ids (the trie's) equal what the tokenizer makes of prompt text + quoted title."""
    builder = _builder(smol_tokenizer)
    for item, title in enumerate(TITLES):
        if title is not None:
            whole = smol_tokenizer(builder.text([1]) + quote(title))["input_ids"]
            assert whole == builder.prompt([1]) + builder.response(item)[:-1]
