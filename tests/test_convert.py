"""Converters (recbole_msl.convert): real formats field by field, filters against references, errors, runs.

Every source gets small files in its real format (gzip included, HTML entities, a tag, a tab inside a
title, a missing title, a duplicate metadata line, Python-literal metadata for 2014), the filters are
checked against brute-force references, bad input must stop with one line and leave nothing behind,
and (marked slow) LLMMSL and SASRec must train and test on every source's output.
"""

from __future__ import annotations

import csv
import gzip
import itertools
import json
import os
import random
import subprocess
import sys
from collections import Counter

import numpy as np
import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from recbole_msl.convert import ConversionReport, convert
from recbole_msl.convert.cli import build_parser, main
from recbole_msl.convert.domain import domain_for
from recbole_msl.convert.filters import k_core_mask, last_n_mask
from recbole_msl.convert.titles import clean_title
from recbole_msl.errors import ConfigError

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SHARED_BOOKS = os.path.join(ROOT, "..", "shared", "datasets", "amazon-books")
MSL_MIRROR = "/work/.mirror/WANGBohaO-jpg+MSL/repo"


# ----------------------------------------------------------------- writers of the real formats
def write_lines(path, lines):
    """Text lines to ``path``; gzip when the name ends in .gz, as the releases ship them."""
    opener = gzip.open if str(path).endswith(".gz") else open
    with opener(path, "wt", encoding="utf-8", newline="") as f:
        f.writelines(line + "\n" for line in lines)
    return str(path)


def read_table(path):
    """A written atomic file as (header, rows of fields)."""
    with open(path, encoding="utf-8", newline="") as f:
        lines = f.read().split("\n")
    assert lines[-1] == "", "files end with a newline"
    return lines[0], [line.split("\t") for line in lines[1:-1]]


def load_yaml(path):
    with open(path, encoding="utf-8") as f:
        return yaml.safe_load(f)


def steps(report: ConversionReport):
    return [(s.name, s.users, s.items, s.interactions) for s in report.steps]


def snapshot(root):
    return sorted(os.path.relpath(os.path.join(d, n), root) for d, dirs, files in os.walk(root) for n in dirs + files)


# ----------------------------------------------------------------- titles and wording
@pytest.mark.parametrize("raw, clean", [
    ("Tom &amp; Jerry", "Tom & Jerry"),
    ("Tom &amp;amp; Jerry", "Tom & Jerry"),  # encoded twice
    ('<span class="a-size-medium">Dune</span> (Book 1)', "Dune (Book 1)"),
    ("Line one<br/>line two", "Line one line two"),
    ("<b>Ha</b>rry", "Harry"),  # inline tags do not split words
    ("a < b > c", "a < b > c"),  # not a tag
    ("&lt;i&gt;Escaped&lt;/i&gt; markup", "Escaped markup"),
    ("Tab\there\nnew\r\nline   spaces ", "Tab here new line spaces"),
    ("  \t ", ""),
    ("<div></div>", ""),
    (None, ""),
    ("Ctrl\x00chars\x1f", "Ctrl chars"),
])
def test_clean_title(raw, clean):
    assert clean_title(raw) == clean


@pytest.mark.parametrize("category, plural, singular, verb", [
    ("Books", "books", "book", "read"),
    ("Amazon_Books", "books", "book", "read"),
    ("Movies_and_TV", "movies", "movie", "watched"),
    ("Movies", "movies", "movie", "watched"),
    ("CDs_and_Vinyl", "albums", "album", "listened to"),
    ("Digital_Music", "albums", "album", "listened to"),
    ("Video_Games", "games", "game", "played"),
    ("Toys_and_Games", "toys", "toy", "played with"),
    ("Toy", "toys", "toy", "played with"),
    ("Beauty", "beauty products", "beauty product", "bought"),
    ("Sports_and_Outdoors", "sports products", "sports product", "bought"),
    ("Clothing_Shoes_and_Jewelry", "clothing items", "clothing item", "bought"),
    ("Kindle_Store", "items", "item", "interacted with"),
])
def test_domain_wording(category, plural, singular, verb):
    d = domain_for(category)
    assert (d.plural, d.singular, d.verb) == (plural, singular, verb)
    assert d.instruction() == (f"Given a list of {plural} the user has {verb} before, please recommend a new "
                               f"{singular} that the user likes to the user.")
    assert d.input() == f"The user has {verb} the following {plural} before: {{history}}"


def test_domain_options_override():
    d = domain_for("Books", noun="podcasts", verb="heard")
    assert (d.plural, d.singular, d.verb) == ("podcasts", "podcast", "heard")
    assert domain_for("Books", noun="series", singular="series").singular == "series"


# ----------------------------------------------------------------- each source, field by field
def test_amazon2014_fields(tmp_path):
    ratings = write_lines(tmp_path / "ratings_Books.csv", [
        "A1,0001,5.0,1400000000",
        "A1,0002,3.0,1300000000",
        "A2,0001,4.0,1350000000",
        "A2,0003,1.0,1360000000",
        "A3,0004,5.0,1370000000",  # 0004 has no title: dropped with its only user
    ])
    meta = write_lines(tmp_path / "meta_Books.json.gz", [
        "{'asin': '0001', 'title': 'Tom &amp; Jerry', 'price': 3.17, 'related': {'also_bought': ['0002']}}",
        repr({"asin": "0002", "title": "Harry's <i>Book</i>\tTwo", "salesRank": {"Books": 5}}),  # "..." quotes
        repr({"asin": "0003", "title": "Line\nbreak &lt;3"}),
        "{'asin': '0004', 'categories': [['Books']]}",  # no title
        "{'asin': '0001', 'title': 'Duplicate line'}",  # the first title wins
        "{'asin': '9999', 'title': 'never rated'}",
    ])
    report = convert("amazon2014", str(tmp_path / "out"), None, ratings=ratings, meta=meta)
    assert report.name == "amazon2014-books"
    header, rows = read_table(report.files["inter"])
    assert header == "user_id:token\titem_id:token\ttimestamp:float"
    assert rows == [["A1", "0002", "1300000000"], ["A1", "0001", "1400000000"],
                    ["A2", "0001", "1350000000"], ["A2", "0003", "1360000000"]]
    header, items = read_table(report.files["item"])
    assert header == "item_id:token\ttitle:token"
    assert items == [["0001", "Tom & Jerry"], ["0002", "Harry's Book Two"], ["0003", "Line break <3"]]
    assert steps(report) == [("read", 3, 4, 5), ("titles", 2, 3, 4)]
    t = report.titles
    assert (t.items, t.titled, t.no_row, t.empty, t.shared_titles) == (4, 3, 0, 1, 0)
    assert t.coverage == 0.75
    with open(report.files["report"], encoding="utf-8") as f:
        record = json.load(f)  # the options and counts, next to the files
    assert record["steps"][0] == {"name": "read", "users": 3, "items": 4, "interactions": 5, "note": ""}
    assert record["options"]["ratings"] == ratings and record["titles"]["empty"] == 1
    assert sorted(os.listdir(report.folder)) == sorted(os.path.basename(p) for p in report.files.values())


def test_amazon2018_fields(tmp_path):
    reviews = write_lines(tmp_path / "Books_5.json.gz", [json.dumps(r) for r in [
        {"overall": 5.0, "verified": True, "reviewTime": "09 13, 2009", "reviewerID": "R1", "asin": "B1",
         "style": {"Format:": " Hardcover"}, "reviewText": 'said "asin": "B9" here', "unixReviewTime": 1252800000},
        {"overall": 2.0, "reviewerID": "R1", "asin": "B2", "unixReviewTime": 1252700000},
        {"overall": 4.0, "reviewerID": "R2", "asin": "B3", "unixReviewTime": 1252600000},
        {"overall": 4.0, "reviewerID": "R2", "asin": "B4", "unixReviewTime": 1252600000},  # empty markup title
        {"overall": 3.0, "reviewerID": "R2", "asin": "B5", "unixReviewTime": 1252900000},  # no metadata row
    ]])
    meta = write_lines(tmp_path / "meta_Books.json.gz", [json.dumps(r) for r in [
        {"category": [], "title": "<span class=\"a-size-medium a-color-secondary\">The &quot;Best&quot; Book</span>",
         "also_buy": [], "asin": "B1"},
        {"title": "Second\tBook", "asin": "B2"},
        {"title": "Second\tBook", "asin": "B2"},  # duplicated line
        {"title": "Third &amp; Last", "asin": "B3"},
        {"title": "<span></span> ", "asin": "B4"},
    ]])
    report = convert("amazon2018", str(tmp_path / "out"), "books", reviews=reviews, meta=meta)
    _, rows = read_table(report.files["inter"])
    assert rows == [["R1", "B2", "1252700000"], ["R1", "B1", "1252800000"], ["R2", "B3", "1252600000"]]
    _, items = read_table(report.files["item"])
    assert items == [["B1", 'The "Best" Book'], ["B2", "Second Book"], ["B3", "Third & Last"]]
    assert steps(report) == [("read", 2, 5, 5), ("titles", 2, 3, 3)]
    t = report.titles
    assert (t.items, t.titled, t.no_row, t.empty) == (5, 3, 1, 1)
    config = load_yaml(report.files["yaml"])
    assert config["load_col"] == {"inter": ["user_id", "item_id", "timestamp"]}
    assert config["eval_args"] == {"split": {"LS": "valid_and_test"}, "order": "TO", "group_by": "user",
                                   "mode": "full"}
    assert config["MAX_ITEM_LIST_LENGTH"] == 10 and config["item_text_field"] == "title"
    assert "item_text_fallback" not in config
    assert config["prompt_instruction"] == ("Given a list of books the user has read before, please recommend a "
                                            "new book that the user likes to the user.")
    assert config["prompt_input"] == "The user has read the following books before: {history}"


def test_amazon2023_fields_and_millisecond_timestamps(tmp_path):
    reviews = write_lines(tmp_path / "Movies_and_TV.jsonl", [json.dumps(r) for r in [
        {"rating": 5.0, "title": "review title, not the item's", "text": "x", "asin": "B00A", "parent_asin": "P1",
         "user_id": "U1", "timestamp": 1588687728923, "helpful_vote": 0, "verified_purchase": True},
        {"rating": 4.0, "asin": "B00B", "parent_asin": "P2", "user_id": "U1", "timestamp": 1588687728001},
        {"rating": 1.0, "asin": "B00C", "parent_asin": "P1", "user_id": "U2", "timestamp": 1500000000999},
    ]])
    meta = write_lines(tmp_path / "meta_Movies_and_TV.jsonl.gz", [json.dumps(r) for r in [
        {"main_category": "Movies & TV", "title": "Heat", "parent_asin": "P1"},
        {"title": "Ran", "parent_asin": "P2"},
    ]])
    report = convert("amazon2023", str(tmp_path / "out"), "movies", reviews=reviews, meta=meta)
    _, rows = read_table(report.files["inter"])
    # whole seconds; the two reviews of U1 in the same second keep their millisecond order
    assert rows == [["U1", "P2", "1588687728"], ["U1", "P1", "1588687728"], ["U2", "P1", "1500000000"]]
    _, items = read_table(report.files["item"])
    assert items == [["P1", "Heat"], ["P2", "Ran"]]
    config = load_yaml(report.files["yaml"])
    assert config["prompt_input"] == "The user has watched the following movies before: {history}"


def test_generic_named_columns_iso_times_and_separators(tmp_path):
    inter = tmp_path / "ratings.csv"
    inter.write_text("uid,movie,stars,when\n"
                     "7,m1,4,2020-01-02T00:00:00\n"
                     "7,m2,5,2020-01-01\n"
                     '8,m1,3,"1577836800"\n')
    items = tmp_path / "movies.tsv.gz"
    write_lines(items, ["movie_id\tname\tyear", "m1\tAlien &amp; Co\t1979", "m2\tBrazil\t1985", "m3\tUnused\t1"])
    report = convert("generic", str(tmp_path / "out"), "films", interactions=str(inter), items=str(items),
                     user_col="uid", item_col="movie", time_col="when", rating_col="stars", item_id_col="movie_id",
                     title_col="name", min_rating=4, domain="Movies")
    _, rows = read_table(report.files["inter"])
    assert rows == [["7", "m2", "1577836800"], ["7", "m1", "1577923200"]]
    _, titles = read_table(report.files["item"])
    assert titles == [["m1", "Alien & Co"], ["m2", "Brazil"]]
    assert steps(report) == [("read", 2, 2, 3), ("min_rating", 1, 2, 2), ("titles", 1, 2, 2)]


def _window_csv(path, header, rows):
    with open(path, "w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f)
        writer.writerow(header)
        writer.writerows(rows)


def test_sliding_window_benchmark_files_and_carved_valid(tmp_path):
    folder = tmp_path / "Toy"
    folder.mkdir()
    header = ["User_id", "item_ids", "mask", "item_titles", "replaced_item_titles", "timestamp"]  # as in data/Toy
    train = [["1", "[10, 11, 12]", "[0, 0, 0]", "['a', 'b', 'c']", "[]", "300"],
             ["2", "[11, 13]", "[0, 0]", "['b', 'd']", "[]", "100"],
             ["1", "[10, 11, 12, 13]", "[0, 0, 0, 0]", "[]", "[]", "500"],
             ["3", "[12, 14]", "[0, 0]", "[]", "[]", "500"],
             ["2", "[13, 15]", "[0, 0]", "[]", "[]", "200"]]
    _window_csv(folder / "train.csv", header, train)
    _window_csv(folder / "test.csv", header, [["1", "[11, 12, 13, 14]", "[]", "[]", "[]", "900"]])
    (folder / "id2name4Rec.json").write_text(json.dumps({
        "10": "Ten &amp; Co", "11": "Eleven", "12": "Twelve\tTwo", "13": "Thirteen", "14": "Fourteen",
        "15": "", "16": "Not in any window"}))
    report = convert("sliding-window", str(tmp_path / "out"), None, folder=str(folder), valid_fraction=0.4)
    assert report.name == "toy"
    header_line, rows = read_table(report.files["train"])
    assert header_line == "user_id:token\titem_id_list:token_seq\titem_id:token\ttimestamp:float"
    # valid: the 2 most recent of the 5 windows (times 500 and 500, stable), train and valid in file order;
    # the window holding item 15 (empty title) is dropped
    assert rows == [["1", "10 11", "12", "300"], ["2", "11", "13", "100"]]
    assert read_table(report.files["valid"])[1] == [["1", "10 11 12", "13", "500"], ["3", "12", "14", "500"]]
    assert read_table(report.files["test"])[1] == [["1", "11 12 13", "14", "900"]]
    assert read_table(report.files["item"])[1] == [["10", "Ten & Co"], ["11", "Eleven"], ["12", "Twelve Two"],
                                                   ["13", "Thirteen"], ["14", "Fourteen"],
                                                   ["16", "Not in any window"]]
    assert [s.name for s in report.steps] == ["read", "carve valid", "titles"]
    assert steps(report)[-1] == ("titles", 3, 5, 5)
    config = load_yaml(report.files["yaml"])
    assert config["benchmark_filename"] == ["train", "valid", "test"]
    assert config["alias_of_item_id"] == ["item_id_list"]
    assert config["load_col"] == {"inter": ["user_id", "item_id_list", "item_id", "timestamp"]}
    assert config["MAX_ITEM_LIST_LENGTH"] == 3
    assert config["prompt_input"] == "The user has played with the following toys before: {history}"


def test_sliding_window_keeps_a_given_valid_file(tmp_path):
    folder = tmp_path / "books"
    folder.mkdir()
    for split, rows in {"train": [["1", "[1, 2]", "10"]], "valid": [["1", "[1, 2, 3]", "20"]],
                        "test": [["1", "[2, 3, 4]", "30"]]}.items():
        _window_csv(folder / f"{split}.csv", ["user_id", "item_ids", "timestamp"], rows)
    (folder / "id2name4Rec.json").write_text(json.dumps({str(i): f"Book {i}" for i in range(1, 5)}))
    report = convert("sliding-window", str(tmp_path / "out"), "b", folder=str(folder))
    assert read_table(report.files["valid"])[1] == [["1", "1 2", "3", "20"]]
    assert [s.name for s in report.steps] == ["read", "titles"] and "valid.csv used" in report.notes[0]


@pytest.mark.skipif(not (os.path.isdir(MSL_MIRROR) and os.path.isdir(SHARED_BOOKS)),
                    reason="needs the authors' repository mirror and ../shared/datasets/amazon-books")
def test_sliding_window_reproduces_the_shared_amazon_books_split(tmp_path):
    """The shared split was made from the authors' Amazon_Books CSVs: same four files, byte for byte."""
    folder = tmp_path / "Amazon_Books"
    folder.mkdir()
    for name in ("train.csv", "test.csv", "id2name4Rec.json"):
        blob = subprocess.run(["git", "-C", MSL_MIRROR, "show", f"HEAD:data/Amazon_Books/{name}"],
                              capture_output=True, check=True).stdout
        (folder / name).write_bytes(blob)
    report = convert("sliding-window", str(tmp_path / "out"), "amazon-books", folder=str(folder), raw_titles=True,
                     keep_untitled=True)
    for suffix in ("train.inter", "valid.inter", "test.inter", "item"):
        with open(os.path.join(report.folder, f"amazon-books.{suffix}"), "rb") as ours, \
                open(os.path.join(SHARED_BOOKS, f"amazon-books.{suffix}"), "rb") as shared:
            assert ours.read() == shared.read(), suffix
    assert (report.titles.shared_titles, report.titles.items_sharing) == (9, 18)  # the README's 9 shared titles


def test_keep_untitled_writes_empty_titles_and_a_fallback(tmp_path):
    reviews = write_lines(tmp_path / "Beauty.json", [
        json.dumps({"reviewerID": "R", "asin": a, "overall": 5, "unixReviewTime": t}) for a, t in
        [("A", 1), ("B", 2)]])
    meta = write_lines(tmp_path / "meta_Beauty.json", [json.dumps({"asin": "A", "title": "Soap"})])
    report = convert("amazon2018", str(tmp_path / "out"), "b", reviews=reviews, meta=meta, keep_untitled=True)
    assert read_table(report.files["item"])[1] == [["A", "Soap"], ["B", ""]]
    assert [s.name for s in report.steps] == ["read"]
    config = load_yaml(report.files["yaml"])
    assert config["item_text_fallback"] == "Item {item_id}"
    assert config["prompt_instruction"].startswith("Given a list of beauty products the user has bought before")


def test_shared_titles_are_kept_and_counted(tmp_path):
    reviews = write_lines(tmp_path / "Books.json", [
        json.dumps({"reviewerID": "R", "asin": a, "overall": 5, "unixReviewTime": t}) for t, a in enumerate("ABC")])
    meta = write_lines(tmp_path / "meta_Books.json", [json.dumps({"asin": a, "title": "Same"}) for a in "ABC"])
    report = convert("amazon2018", str(tmp_path / "out"), "b", reviews=reviews, meta=meta)
    assert len(read_table(report.files["item"])[1]) == 3
    assert (report.titles.shared_titles, report.titles.items_sharing) == (1, 3)


# ----------------------------------------------------------------- filters against references
def brute_force_k_core(rows, user_k, item_k):
    """The union of every subset of rows in which all users and items reach their k: the k-core."""
    core = set()
    for size in range(1, len(rows) + 1):
        for subset in itertools.combinations(range(len(rows)), size):
            users = Counter(rows[r][0] for r in subset)
            items = Counter(rows[r][1] for r in subset)
            if all(users[rows[r][0]] >= user_k and items[rows[r][1]] >= item_k for r in subset):
                core.update(subset)
    return core


@settings(max_examples=150, deadline=None)
@given(rows=st.lists(st.tuples(st.integers(0, 3), st.integers(0, 3)), min_size=1, max_size=11),
       user_k=st.integers(1, 3), item_k=st.integers(1, 3))
def test_k_core_matches_brute_force(rows, user_k, item_k):
    user = np.array([u for u, _ in rows], dtype=np.int32)
    item = np.array([i for _, i in rows], dtype=np.int32)
    keep = k_core_mask(user, item, user_k, item_k)
    assert set(np.flatnonzero(keep).tolist()) == brute_force_k_core(rows, user_k, item_k)


def test_last_n_keeps_the_latest_rows_of_each_user():
    user = np.array([0, 0, 0, 0, 1, 2, 2], dtype=np.int32)  # grouped by user, in time order
    assert last_n_mask(user, 2).tolist() == [False, False, True, True, True, True, True]
    assert last_n_mask(user, 1).tolist() == [False, False, False, True, True, False, True]


def reference_pipeline(rows, titles, min_rating=None, start=None, end=None, dedup=False, k=0, last_n=None):
    """The documented order in plain Python: sort, rating, window, titles, dedup, k-core (iterated), last N."""
    first = {}
    for index, r in enumerate(rows):
        first.setdefault(r[0], index)
    # users in order of first appearance, each user's rows by time, ties in input order
    rows = [r for _, r in sorted(enumerate(rows), key=lambda kr: (first[kr[1][0]], kr[1][3], kr[0]))]
    out = [("read", rows)]
    if min_rating is not None:
        rows = [r for r in rows if r[2] >= min_rating]
        out.append(("min_rating", rows))
    if start is not None or end is not None:
        rows = [r for r in rows if (start is None or r[3] >= start) and (end is None or r[3] <= end)]
        out.append(("time window", rows))
    rows = [r for r in rows if titles.get(r[1])]
    out.append(("titles", rows))
    if dedup:
        seen, kept = set(), []
        for r in rows:
            if (r[0], r[1]) not in seen:
                seen.add((r[0], r[1]))
                kept.append(r)
        rows = kept
        out.append(("dedup", rows))
    if k:
        while True:
            users, items = Counter(r[0] for r in rows), Counter(r[1] for r in rows)
            kept = [r for r in rows if users[r[0]] >= k and items[r[1]] >= k]
            if len(kept) == len(rows):
                break
            rows = kept
        out.append(("k-core", rows))
    if last_n:
        per_user = Counter(r[0] for r in rows)
        seen = Counter()
        kept = []
        for r in rows:
            seen[r[0]] += 1
            if per_user[r[0]] - seen[r[0]] < last_n:
                kept.append(r)
        rows = kept
        out.append(("last_n", rows))
    return [(name, len({r[0] for r in rs}), len({r[1] for r in rs}), len(rs)) for name, rs in out], rows


@pytest.mark.parametrize("seed", range(4))
def test_every_filter_count_matches_a_plain_python_reference(tmp_path, seed):
    rng = random.Random(seed)
    rows = [(f"u{rng.randrange(12):02d}", f"i{rng.randrange(15):02d}", rng.choice([1.0, 3.0, 4.0, 5.0]),
             rng.randrange(1000, 1100)) for _ in range(220)]
    titles = {f"i{i:02d}": ("" if i % 7 == 3 else f"Title {i}") for i in range(15)}
    options = {"min_rating": 3, "start": 1010, "end": 1090, "dedup": True, "k": 3, "last_n": 4}
    inter = tmp_path / "inter.csv"
    inter.write_text("user_id,item_id,rating,timestamp\n" + "".join(f"{u},{i},{r},{t}\n" for u, i, r, t in rows))
    items = tmp_path / "items.csv"
    items.write_text("item_id,title\n" + "".join(f"{i},{t}\n" for i, t in titles.items()))
    report = convert("generic", str(tmp_path / "out"), "g", interactions=str(inter), items=str(items),
                     rating_col="rating", min_rating=3, start=1010, end="1090", dedup=True, k_core=3, last_n=4)
    expected_steps, expected_rows = reference_pipeline(rows, titles, **options)
    assert steps(report) == expected_steps
    _, written = read_table(report.files["inter"])
    assert written == [[u, i, str(t)] for u, i, _, t in expected_rows]


def test_user_k_and_item_k_apply_separately(tmp_path):
    rows = [("a", "x"), ("a", "y"), ("b", "x"), ("c", "z")]
    inter = tmp_path / "i.csv"
    inter.write_text("user_id,item_id,timestamp\n" + "".join(f"{u},{i},{t}\n" for t, (u, i) in enumerate(rows)))
    items = tmp_path / "t.csv"
    items.write_text("item_id,title\nx,X\ny,Y\nz,Z\n")
    report = convert("generic", str(tmp_path / "out"), "g", interactions=str(inter), items=str(items), item_k=2)
    assert steps(report)[-1] == ("k-core", 2, 1, 2)  # only x has 2 interactions; then a and b keep one each
    report = convert("generic", str(tmp_path / "out"), "g", interactions=str(inter), items=str(items), user_k=1,
                     k_core=2, overwrite=True)  # user_k overrides k_core for users, items keep k_core's 2
    assert steps(report)[-1] == ("k-core", 2, 1, 2)
    report = convert("generic", str(tmp_path / "out"), "g", interactions=str(inter), items=str(items), user_k=2,
                     overwrite=True)  # users only: a keeps x and y, although each has one interaction left
    assert steps(report)[-1] == ("k-core", 1, 2, 2)


# ----------------------------------------------------------------- errors: one line, nothing written
def _amazon2018_files(tmp_path, review_lines=None, meta_lines=None):
    reviews = review_lines if review_lines is not None else [
        json.dumps({"reviewerID": "R", "asin": "A", "overall": 5, "unixReviewTime": 1})]
    meta = meta_lines if meta_lines is not None else [json.dumps({"asin": "A", "title": "T"})]
    return {"reviews": write_lines(tmp_path / "Books.json.gz", reviews),
            "meta": write_lines(tmp_path / "meta_Books.json.gz", meta)}


ERRORS = [
    ("missing review file", lambda p: {"reviews": str(p / "nope.json.gz"), "meta": str(p / "nope2.json")},
     ["review file", "nope.json.gz does not exist", "download it from the Amazon 2018 release"]),
    ("unparseable review line", lambda p: _amazon2018_files(p, [
        json.dumps({"reviewerID": "R", "asin": "A", "overall": 5, "unixReviewTime": 1}), "{not json"]),
     ["Books.json.gz line 2: is not a JSON object", "2018 review"]),
    ("wrong keys (a 2023 file)", lambda p: _amazon2018_files(p, [
        json.dumps({"user_id": "U", "parent_asin": "A", "rating": 5, "timestamp": 1})]),
     ["line 1: has no 'reviewerID'", "2023 files: use amazon2023"]),
    ("non-numeric rating", lambda p: _amazon2018_files(p, [
        json.dumps({"reviewerID": "R", "asin": "A", "overall": "five", "unixReviewTime": 1})]),
     ["line 1: 'overall' and 'unixReviewTime' must be numbers"]),
    ("id with a tab", lambda p: _amazon2018_files(p, [
        json.dumps({"reviewerID": "R\t1", "asin": "A", "overall": 5, "unixReviewTime": 1})]),
     ["line 1: id 'R\\t1' contains whitespace", "plain tokens"]),
    ("broken meta line", lambda p: _amazon2018_files(p, meta_lines=['{"asin": "A", "title": "T"', "{}"]),
     ["meta_Books.json.gz line 1: cannot parse the record"]),
    ("truncated gzip", lambda p: {**_amazon2018_files(p), "reviews": _truncated(p / "Cut.json.gz")},
     ["Cut.json.gz after line", "truncated or corrupt: download it again"]),
    ("empty after filtering", lambda p: {**_amazon2018_files(p), "k_core": 2},
     ["no interactions are left after the k-core filter (users >= 2, items >= 2; 1 before it)", "loosen that filter"]),
    ("every title missing", lambda p: _amazon2018_files(p, meta_lines=[json.dumps({"asin": "A"})]),
     ["no interactions are left after the titles filter"]),
    ("bad date", lambda p: {**_amazon2018_files(p), "start": "2018/01/01"},
     ["--start '2018/01/01' is neither a date YYYY-MM-DD nor unix seconds"]),
    ("bad k", lambda p: {**_amazon2018_files(p), "k_core": "five"}, ["--k_core must be an integer >= 1"]),
    ("unknown option", lambda p: {**_amazon2018_files(p), "kcore": 5}, ["unknown option 'kcore'", "k_core"]),
    ("min_rating without ratings", None, ["--min_rating needs ratings"]),
]


def _truncated(path):
    full = gzip.compress(("\n".join(json.dumps({"reviewerID": f"R{k}", "asin": "A", "overall": 5,
                                                "unixReviewTime": k}) for k in range(2000)) + "\n").encode())
    path.write_bytes(full[: len(full) // 2])
    return str(path)


@pytest.mark.parametrize("make, fragments", [pytest.param(c[1], c[2], id=c[0]) for c in ERRORS])
def test_bad_input_is_one_line_and_writes_nothing(tmp_path, make, fragments):
    inputs = tmp_path / "in"
    inputs.mkdir()
    out = tmp_path / "out"
    if make is None:  # generic without a rating column
        (inputs / "i.csv").write_text("user_id,item_id,timestamp\nu,i,1\n")
        (inputs / "t.csv").write_text("item_id,title\ni,T\n")
        source, options = "generic", {"interactions": str(inputs / "i.csv"), "items": str(inputs / "t.csv"),
                                      "min_rating": 4}
    else:
        source, options = "amazon2018", make(inputs)
    with pytest.raises(ConfigError) as info:
        convert(source, str(out), "x", **options)
    message = str(info.value)
    assert "\n" not in message
    for fragment in fragments:
        assert fragment in message, message
    assert not out.exists()  # not even the parent folder


@pytest.mark.parametrize("files, options, fragments", [
    ({"i.csv": "user,item,time\nu,i,1\n", "t.csv": "item_id,title\ni,T\n"}, {},
     ["i.csv line 1: has no column 'user_id' (columns: user, item, time)", "pass --user_col"]),
    ({"i.csv": "user_id,item_id,timestamp\nu,i,yesterday\n", "t.csv": "item_id,title\ni,T\n"}, {},
     ["i.csv line 2: time 'yesterday'", "not a number (or an ISO date)"]),
    ({"i.dat": "user_id,item_id,timestamp\nu,i,1\n", "t.csv": "item_id,title\ni,T\n"}, {"interactions": "i.dat"},
     ["cannot tell the separator of", "i.dat", "pass --sep"]),
    ({"i.csv": "user_id,item_id,timestamp\nu,i,1\n", "t.csv": "item_id,name\ni,T\n"}, {},
     ["t.csv line 1: has no column 'title'", "pass --title_col"]),
    ({"i.csv": "user_id,item_id,timestamp\n,i,1\n", "t.csv": "item_id,title\ni,T\n"}, {},
     ["i.csv line 2: id '' is empty or reads as missing"]),
])
def test_generic_errors_name_the_line_and_the_option(tmp_path, files, options, fragments):
    for name, text in files.items():
        (tmp_path / name).write_text(text)
    options = dict(options)
    paths = {"interactions": str(tmp_path / options.pop("interactions", "i.csv")), "items": str(tmp_path / "t.csv")}
    with pytest.raises(ConfigError) as info:
        convert("generic", str(tmp_path / "out"), "g", **paths, **options)
    assert all(f in str(info.value) for f in fragments), str(info.value)
    assert not (tmp_path / "out").exists()


# ----------------------------------------------------------------- confusing inputs (issue 43)
def test_amazon2018_files_with_a_utf8_bom_convert(tmp_path):
    """Editors on Windows start a file with a byte order mark; line 1 is still a JSON object."""
    review = json.dumps({"reviewerID": "R", "asin": "A", "overall": 5, "unixReviewTime": 1252800000})
    (tmp_path / "Books.json").write_bytes(b"\xef\xbb\xbf" + (review + "\n").encode())
    meta = tmp_path / "meta_Books.json.gz"
    with gzip.open(meta, "wb") as f:
        f.write(b"\xef\xbb\xbf" + (json.dumps({"asin": "A", "title": "T"}) + "\n").encode())
    report = convert("amazon2018", str(tmp_path / "out"), "b", reviews=str(tmp_path / "Books.json"), meta=str(meta))
    assert read_table(report.files["inter"])[1] == [["R", "A", "1252800000"]]
    assert read_table(report.files["item"])[1] == [["A", "T"]]


@pytest.mark.parametrize("gz", [False, True])
def test_an_encoding_error_names_its_own_line(tmp_path, gz):
    """Text is decoded in blocks ahead of the lines read: the error named "after line 0" for a bad line 3."""
    good = [json.dumps({"reviewerID": f"R{k}", "asin": "A", "overall": 5, "unixReviewTime": 1252800000})
            for k in range(5)]
    data = ("\n".join(good[:2]) + "\n").encode() + b'{"reviewerID": "Caf\xe9", "asin": "A", "overall": 5, ' \
        b'"unixReviewTime": 1252800000}\n' + ("\n".join(good[2:]) + "\n").encode()
    path = tmp_path / ("Books.json.gz" if gz else "Books.json")
    path.write_bytes(gzip.compress(data) if gz else data)
    meta = write_lines(tmp_path / "meta_Books.json", [json.dumps({"asin": "A", "title": "T"})])
    with pytest.raises(ConfigError) as info:
        convert("amazon2018", str(tmp_path / "out"), "b", reviews=str(path), meta=meta)
    message = str(info.value)
    assert f"{path} line 3: is not UTF-8 text (byte 0xe9 at column 20)" in message, message
    assert "re-encode the file as UTF-8" in message and "\n" not in message


@pytest.mark.parametrize("title, written", [
    (["List", "Title"], "List Title"),
    (["", "  ", "Heat", None, ["Director's", "Cut"]], "Heat Director's Cut"),
    (["Tom &amp; Jerry"], "Tom & Jerry"),
    ([], None),  # no title: the item is dropped as untitled
    ({"en": "Heat"}, None),  # an object is no title (not its Python repr)
    (1984, "1984"),
])
def test_a_list_title_is_its_parts_joined_with_a_space(tmp_path, title, written):
    reviews = [json.dumps({"reviewerID": "R", "asin": a, "overall": 5, "unixReviewTime": 1252800000 + k})
               for k, a in enumerate("AB")]
    meta = [json.dumps({"asin": "A", "title": title}), json.dumps({"asin": "B", "title": "Other"})]
    report = convert("amazon2018", str(tmp_path / "out"), "b", **_amazon2018_files(tmp_path, reviews, meta))
    titles = dict(read_table(report.files["item"])[1])
    assert titles.get("A") == written
    assert clean_title(title) == (written or "")


@pytest.mark.parametrize("name, text, option, fix", [
    ("i.csv", "user_id;item_id;timestamp\nu;i;1500000000\n", "interactions", "pass --sep=semicolon"),
    ("i.csv", "user_id\titem_id\ttimestamp\nu\ti\t1500000000\n", "interactions", "pass --sep=tab"),
    ("i.tsv", "user_id,item_id,timestamp\nu,i,1500000000\n", "interactions", "pass --sep=comma"),
    ("t.csv", "item_id;title\ni;T\n", "items", "pass --items_sep=semicolon"),
])
def test_a_header_split_on_the_wrong_separator_suggests_the_separator(tmp_path, name, text, option, fix):
    paths = {"interactions": tmp_path / "i.csv", "items": tmp_path / "t.csv"}
    paths["interactions"].write_text("user_id,item_id,timestamp\nu,i,1500000000\n")
    paths["items"].write_text("item_id,title\ni,T\n")
    paths[option] = tmp_path / name
    paths[option].write_text(text)
    with pytest.raises(ConfigError) as info:
        convert("generic", str(tmp_path / "out"), "g", **{k: str(v) for k, v in paths.items()})
    message = str(info.value)
    assert f"{paths[option]} line 1: has no column" in message and fix in message, message
    assert "_col" not in message.split(";")[-1] and "\n" not in message
    # and the separator it names works
    sep = fix.split("=")[1]
    report = convert("generic", str(tmp_path / "out"), "g", **{k: str(v) for k, v in paths.items()},
                     **{fix.split("--")[1].split("=")[0]: sep})
    assert read_table(report.files["item"])[1] == [["i", "T"]]


@pytest.mark.parametrize("files, fragments", [
    ({"train.csv": "user_id,item_ids,timestamp\n1,[1],5\n"}, ["train.csv line 2: item_ids must list at least one"]),
    ({"train.csv": "user_id,item_ids,timestamp\n1,\"[1, 2\",5\n"}, ["train.csv line 2: item_ids '[1, 2'"]),
    ({"train.csv": "user_id,items,timestamp\n1,\"[1, 2]\",5\n"}, ["train.csv line 1: has no column 'item_ids'"]),
    ({"test.csv": None}, ["test file", "test.csv does not exist", "--test_file"]),
    ({"id2name4Rec.json": None}, ["title file", "id2name4Rec.json does not exist"]),
    ({"id2name4Rec.json": "[1, 2]"}, ["must be a JSON object mapping item id -> title, not a list"]),
])
def test_sliding_window_errors(tmp_path, files, fragments):
    folder = tmp_path / "w"
    folder.mkdir()
    defaults = {"train.csv": "user_id,item_ids,timestamp\n1,\"[1, 2]\",5\n2,\"[1, 2]\",6\n",
                "test.csv": "user_id,item_ids,timestamp\n1,\"[1, 2, 3]\",7\n",
                "id2name4Rec.json": json.dumps({"1": "a", "2": "b", "3": "c"})}
    for name, text in {**defaults, **files}.items():
        if text is not None:
            (folder / name).write_text(text)
    with pytest.raises(ConfigError) as info:
        convert("sliding-window", str(tmp_path / "out"), "w", folder=str(folder))
    assert all(f in str(info.value) for f in fragments), str(info.value)
    assert "\n" not in str(info.value) and not (tmp_path / "out").exists()


def test_existing_output_is_refused_then_replaced_with_overwrite(tmp_path):
    files = _amazon2018_files(tmp_path)
    first = convert("amazon2018", str(tmp_path / "out"), "b", **files)
    with pytest.raises(ConfigError, match="already exists; pass --overwrite"):
        convert("amazon2018", str(tmp_path / "out"), "b", **files)
    (tmp_path / "out" / "b" / "notes.txt").write_text("mine")
    second = convert("amazon2018", str(tmp_path / "out"), "b", overwrite=True, **files)
    assert second.folder == first.folder  # only the converter's files are replaced: a user's notes stay
    assert snapshot(tmp_path / "out") == ["b"] + [os.path.join("b", f"b.{k}") for k in
                                                  ("convert.json", "inter", "item", "yaml")] + ["b/notes.txt"]


@pytest.mark.parametrize("overwrite", [False, True])
def test_a_failure_while_writing_leaves_nothing_behind(tmp_path, monkeypatch, overwrite):
    """A crash half way through the files (full disk, Ctrl-C) removes the staging folder; an old folder stays."""
    from recbole_msl.convert import pipeline

    files = _amazon2018_files(tmp_path)
    out = tmp_path / "deep" / "out"
    if overwrite:
        convert("amazon2018", str(out), "b", **files)
        before = {p: (out / p).read_bytes() for p in snapshot(out) if (out / p).is_file()}
    real = pipeline.write_lines

    def failing(path, header, lines):
        real(path, header, lines)
        if path.endswith(".item"):
            raise OSError(28, "No space left on device")

    monkeypatch.setattr(pipeline, "write_lines", failing)
    with pytest.raises(OSError, match="no space left on the device while writing the converted files"):
        convert("amazon2018", str(out), "b", overwrite=overwrite, **files)
    if overwrite:
        assert {p: (out / p).read_bytes() for p in snapshot(out) if (out / p).is_file()} == before
    else:
        assert not (tmp_path / "deep").exists()  # the folders made for the output are gone too


# ----------------------------------------------------------------- command line
def test_cli_help_lists_every_source_and_option(capsys):
    assert main(["--help"]) == 0
    text = capsys.readouterr().out
    assert all(s in text for s in ("amazon2014", "amazon2018", "amazon2023", "generic", "sliding-window"))
    assert main(["amazon2018", "--help"]) == 0
    text = capsys.readouterr().out
    for option in ("--reviews", "--meta", "--min_rating", "--start", "--end", "--k_core", "--user_k", "--item_k",
                   "--last_n", "--dedup", "--keep_untitled", "--domain_noun", "--domain_verb", "--overwrite", "--out",
                   "--name"):
        assert option in text, option
    assert "NOT applied again" in text
    assert build_parser("recbole-msl convert").prog == "recbole-msl convert"


def test_cli_prints_the_report_and_the_training_command(tmp_path, capsys):
    files = _amazon2018_files(tmp_path)
    out = str(tmp_path / "out")
    assert main(["amazon2018", "--reviews", files["reviews"], "--meta", files["meta"], "--out", out]) == 0
    text = capsys.readouterr().out
    folder = os.path.join(out, "amazon2018-books")
    assert f"converted amazon2018 -> {folder}" in text and "titles: 1 of 1 items read have one (100.0 %)" in text
    assert (f"train: recbole-msl train --model=LLMMSL --dataset=amazon2018-books --data_path={out} "
            f"--config_files={folder}/amazon2018-books.yaml") in text


def test_cli_error_is_one_line_with_exit_code_2(tmp_path, capsys):
    assert main(["amazon2014", "--ratings", str(tmp_path / "r.csv"), "--meta", "m.json", "--out", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ratings file") and err.count("\n") == 1


def test_module_entry_point_lists_sources():
    done = subprocess.run([sys.executable, "-m", "recbole_msl.convert", "--help"], capture_output=True, text=True,
                          cwd=ROOT, timeout=120, check=False)
    assert done.returncode == 0 and "sliding-window" in done.stdout


# ----------------------------------------------------------------- every source trains LLMMSL and SASRec
N_USERS, PER_USER, N_ITEMS = 30, 6, 40


def _synthetic(seed=0):
    """30 users x 6 interactions over 40 titled items, shuffled as the releases are not sorted."""
    rng = random.Random(seed)
    rows = [(f"U{u:03d}", f"I{i:03d}", 5.0, 1_500_000_000 + 86_400 * (u + 40 * k))
            for u in range(N_USERS) for k, i in enumerate(rng.sample(range(N_ITEMS), PER_USER))]
    rng.shuffle(rows)
    return rows, {f"I{i:03d}": f"The &amp; Book <i>number</i> {i}" for i in range(N_ITEMS)}


def _write_source(source, folder):
    """The synthetic set in ``source``'s real format; returns the convert options."""
    rows, titles = _synthetic()
    if source == "amazon2014":
        return {"ratings": write_lines(folder / "ratings_Books.csv", [f"{u},{i},{r},{t}" for u, i, r, t in rows]),
                "meta": write_lines(folder / "meta_Books.json.gz",
                                    [repr({"asin": i, "title": t}) for i, t in titles.items()])}
    if source in ("amazon2018", "amazon2023"):
        keys = ("reviewerID", "asin", "overall", "unixReviewTime") if source == "amazon2018" else \
            ("user_id", "parent_asin", "rating", "timestamp")
        scale = 1 if source == "amazon2018" else 1000
        suffix = "json" if source == "amazon2018" else "jsonl"
        return {"reviews": write_lines(folder / f"Books.{suffix}.gz", [
                    json.dumps(dict(zip(keys, (u, i, r, t * scale)))) for u, i, r, t in rows]),
                "meta": write_lines(folder / f"meta_Books.{suffix}.gz",
                                    [json.dumps({keys[1]: i, "title": t}) for i, t in titles.items()])}
    if source == "generic":
        write_lines(folder / "books.csv", ["user,book,when"] + [f"{u},{i},{t}" for u, i, _, t in rows])
        write_lines(folder / "books.tsv", ["book\tname"] + [f"{i}\t{t}" for i, t in titles.items()])
        return {"interactions": str(folder / "books.csv"), "items": str(folder / "books.tsv"), "user_col": "user",
                "item_col": "book", "time_col": "when", "item_id_col": "book", "title_col": "name"}
    # sliding-window: BIGRec-style windows of each user's time-ordered items (up to 10 history items)
    history = {}
    for u, i, _, t in sorted(rows, key=lambda r: (r[0], r[3])):
        history.setdefault(u, []).append((i.lstrip("I"), t))
    train, test = [], []
    for u, seq in history.items():
        for end in range(2, len(seq)):
            train.append([u, str([int(i) for i, _ in seq[max(0, end - 11):end]]), seq[end - 1][1]])
        test.append([u, str([int(i) for i, _ in seq[-11:]]), seq[-1][1]])
    window_folder = folder / "Amazon_Books"
    window_folder.mkdir()
    _window_csv(window_folder / "train.csv", ["user_id", "item_ids", "timestamp"], train)
    _window_csv(window_folder / "test.csv", ["user_id", "item_ids", "timestamp"], test)
    (window_folder / "id2name4Rec.json").write_text(json.dumps({i.lstrip("I").lstrip("0") or "0": t
                                                                for i, t in titles.items()}))
    return {"folder": str(window_folder)}


SOURCES = ["amazon2014", "amazon2018", "amazon2023", "generic", "sliding-window"]


def _last_items(source):
    """user -> the source's item tokens of that user in time order (from the synthetic rows, not the converted
    files); the sliding-window files write item ids as plain numbers (I007 -> 7)."""
    rows, _ = _synthetic()
    sequences = {}
    for u, i, _, _ in sorted(rows, key=lambda r: (r[0], r[3])):
        sequences.setdefault(u, []).append(str(int(i[1:])) if source == "sliding-window" else i)
    return sequences


@pytest.fixture(scope="module")
def converted(tmp_path_factory):
    """Every source converted once: source -> (out folder, ConversionReport)."""
    root = tmp_path_factory.mktemp("converted")
    done = {}
    for source in SOURCES:
        folder = root / source
        folder.mkdir()
        report = convert(source, str(root / "out"), f"syn-{source}", **_write_source(source, folder))
        done[source] = (str(root / "out"), report)
    return done


@pytest.mark.parametrize("source", SOURCES)
def test_synthetic_conversion_counts(converted, source):
    _, report = converted[source]
    rows, _ = _synthetic()
    n_items = len({i for _, i, _, _ in rows})
    if source == "sliding-window":  # 4 training windows and 1 test window per user
        assert steps(report)[:2] == [("read", N_USERS, n_items, N_USERS * (PER_USER - 1)),
                                     ("carve valid", N_USERS, n_items, N_USERS * (PER_USER - 1))]
    else:
        assert steps(report) == [("read", N_USERS, n_items, N_USERS * PER_USER),
                                 ("titles", N_USERS, n_items, N_USERS * PER_USER)]
    assert report.titles.coverage == 1.0
    assert read_table(report.files["item"])[1][0][1].startswith("The & Book number ")


@pytest.mark.slow
@pytest.mark.parametrize("source", SOURCES)
def test_llmmsl_trains_on_every_source(converted, source, tiny_llm_dir, tmp_path, monkeypatch):
    from recbole_msl import run

    monkeypatch.chdir(tmp_path)  # RecBole writes ./log
    out, report = converted[source]
    result = run("LLMMSL", report.name, config_file_list=[report.files["yaml"]], config_dict={
        "data_path": out, "llm_path": tiny_llm_dir, "epochs": 1, "train_samples_per_epoch": 8,
        "train_batch_size": 8, "micro_batch_size": 4, "eval_max_users": 4, "num_beams": 10, "decode_batch_size": 4,
        "show_progress": False, "checkpoint_dir": str(tmp_path / "saved"), "log_wandb": False}, keep_test_hits=True)
    expected = _last_items(source)
    users, targets = result["test_hits"]["users"], result["test_hits"]["targets"]
    assert len(set(users)) == len(users) == 4  # eval_max_users, one test row each
    assert targets == [expected[u][-1] for u in users]  # each user's latest item of the source
    # the prompts' titles are the source's titles (cleaned) of the right items: the first 3 test users' examples
    title = {token: f"The & Book number {int(token.lstrip('I'))}" for sequence in expected.values()
             for token in sequence}
    assert len(result["examples"]) == 3
    for user, example in zip(users, result["examples"]):
        assert example["target"] == title[expected[user][-1]]
        assert example["history"] == [title[t] for t in expected[user][:-1][-5:]]


@pytest.mark.slow
@pytest.mark.parametrize("source", SOURCES)
def test_sasrec_trains_on_every_source(converted, source, tmp_path, monkeypatch):
    from recbole_msl import run

    monkeypatch.chdir(tmp_path)
    out, report = converted[source]
    result = run("SASRec", report.name, config_file_list=[report.files["yaml"]], config_dict={
        "data_path": out, "epochs": 1, "hidden_size": 16, "inner_size": 32, "n_layers": 1, "n_heads": 1,
        "train_batch_size": 256, "show_progress": False, "checkpoint_dir": str(tmp_path / "saved")},
        keep_test_hits=True)
    expected = _last_items(source)
    hits = result["test_hits"]
    # every user of the source is tested once, on their latest item
    assert sorted(zip(hits["users"], hits["targets"])) == sorted((u, seq[-1]) for u, seq in expected.items())
