"""Titles read verbatim from .item files, article restoring, prompt assembly and truncation."""

import pytest

from recbole_msl.errors import ConfigError
from recbole_msl.item_text import read_item_texts, restore_leading_article
from recbole_msl.lm.prompt import DEFAULT_TEMPLATE, PromptBuilder


@pytest.mark.parametrize("raw, expected", [
    ("American President, The", "The American President"),
    ("City of Lost Children, The (Cité des enfants perdus, La)", "The City of Lost Children (Cité des enfants perdus, La)"),
    ("Boot, Das", "Das Boot"),
    ("Haine, L'", "L'Haine"),
    ("Toy Story", "Toy Story"),
    ("Crow: City of Angels, The (1996)", "The Crow: City of Angels (1996)"),
    ("Thin Red Line, A Novel", "Thin Red Line, A Novel"),  # not a trailing article
])
def test_restore_leading_article(raw, expected):
    assert restore_leading_article(raw) == expected


def write_item_file(folder, rows, header="item_id:token\ttitle:token_seq"):
    path = folder / "toy.item"
    path.write_text(header + "\n" + "\n".join(rows) + "\n", encoding="utf-8")
    return {"data_path": str(folder), "dataset": "toy", "field_separator": "\t", "encoding": "utf-8",
            "ITEM_ID_FIELD": "item_id"}


def test_titles_are_read_verbatim(tmp_path):
    config = write_item_file(tmp_path, ['1\tTwo  spaces   and "quotes"', "2\tÜnïcødé — title", "3\t  padded "])
    texts = read_item_texts(config, "title")
    assert texts == {"1": 'Two  spaces   and "quotes"', "2": "Ünïcødé — title", "3": "  padded "}


def test_missing_column_names_the_fix(tmp_path):
    config = write_item_file(tmp_path, ["1\tA"])
    with pytest.raises(ConfigError, match="set item_text_field"):
        read_item_texts(config, "movie_title")


def test_missing_item_file_names_the_fix(tmp_path):
    config = {"data_path": str(tmp_path), "dataset": "none", "field_separator": "\t", "encoding": "utf-8",
              "ITEM_ID_FIELD": "item_id"}
    with pytest.raises(ConfigError, match="no item file"):
        read_item_texts(config, "title")


@pytest.fixture(scope="module")
def builder(smol_tokenizer):
    titles = [None, "Heat", "Toy Story", "A Very Long Title " * 5, "Fargo"]
    return PromptBuilder(smol_tokenizer, titles, DEFAULT_TEMPLATE, "Recommend a movie.",
                         "The user watched: {history}", max_length=120)


def test_prompt_text_and_response_ids(builder, smol_tokenizer):
    text = smol_tokenizer.decode(builder.prompt([1, 2]))
    assert "### Instruction:\nRecommend a movie." in text
    assert 'The user watched: "Heat", "Toy Story"\n\n### Response:\n' in text
    response = builder.response(4)
    assert response[-1] == smol_tokenizer.eos_token_id
    assert response[:-1] == smol_tokenizer('"Fargo"', add_special_tokens=False)["input_ids"]


def test_long_prompts_lose_oldest_history_first(builder, smol_tokenizer):
    history = [3, 3, 3, 3, 1, 2]
    ids = builder.prompt(history)
    assert len(ids) + builder.max_response <= 120
    text = smol_tokenizer.decode(ids, skip_special_tokens=True)
    assert text.endswith('"Heat", "Toy Story"\n\n### Response:\n')  # the most recent items survive
    kept = text.count("A Very Long Title") // 5
    one_more = smol_tokenizer(builder.text([3] * (kept + 1) + [1, 2]))["input_ids"]
    assert kept < 4 and len(one_more) + builder.max_response > 120  # no room for one more


def test_template_that_cannot_fit_is_refused(smol_tokenizer):
    with pytest.raises(ConfigError, match="does not fit"):
        PromptBuilder(smol_tokenizer, [None, "Heat"], DEFAULT_TEMPLATE, "x", "{history}", max_length=20)


def test_input_without_history_slot_is_refused(smol_tokenizer):
    with pytest.raises(ConfigError, match="history"):
        PromptBuilder(smol_tokenizer, [None, "Heat"], DEFAULT_TEMPLATE, "x", "no slot", max_length=200)
