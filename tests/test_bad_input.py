"""Bad input, table-driven: every case stops with ONE line that names the fix, and writes nothing.

Each case runs the command line (``main``) on a small fake data set in ``tmp_path`` with the tiny
random Llama as backbone, and expects exit code 2, a single ``error: ...`` line on stderr (no
traceback) containing the given fragments, and the data folder and ``checkpoint_dir`` exactly as
they were before (no half-written checkpoint, no staging folder, no partial download).
"""

from __future__ import annotations

import logging
import os

import numpy as np
import pytest

from recbole_msl.cli import main
from recbole_msl.errors import ConfigError
from recbole_msl.item_text import item_titles
from recbole_msl.model.objectives import OBJECTIVES
from recbole_msl.recbole_seam.config import Config
from recbole_msl.recbole_seam.data import create_dataset, data_preparation

N_ITEMS = 20
LOAD_COL = "--load_col={'inter': ['user_id', 'item_id', 'timestamp'], 'item': ['item_id', 'title']}"


def history(users=range(1, 9), length=8):
    """Rows (user, item, time): user u watches items u+1 .. u+length in time order (all ids < N_ITEMS)."""
    return [(u, u + k + 1, 1000 * u + k) for u in users for k in range(length)]


def write_atomic(root, name, inter=None, items=None, item_header="item_id:token\ttitle:token_seq", times=True):
    """RecBole atomic files ``<root>/<name>/<name>.inter`` and ``.item`` (``items=False``: no .item file;
    ``times=False``: no timestamp column)."""
    folder = os.path.join(root, name)
    os.makedirs(folder, exist_ok=True)
    with open(os.path.join(folder, f"{name}.inter"), "w", encoding="utf-8") as f:
        f.write("user_id:token\titem_id:token" + ("\ttimestamp:float\n" if times else "\n"))
        f.writelines(f"{u}\t{i}" + (f"\t{t}\n" if times else "\n") for u, i, t in (history() if inter is None else inter))
    if items is not False:
        rows = [(i, f"Movie number {i}") for i in range(1, N_ITEMS + 1)] if items is None else items
        with open(os.path.join(folder, f"{name}.item"), "w", encoding="utf-8") as f:
            f.write(item_header + "\n")
            f.writelines(f"{i}\t{t}\n" for i, t in rows)


def titled(blank):
    """The standard catalogue with item 3's title replaced by ``blank``."""
    return [(i, blank if i == 3 else f"Movie number {i}") for i in range(1, N_ITEMS + 1)]


def write_gguf(path, arch):
    """A valid GGUF file (header, tokenizer, one tensor) of an architecture transformers cannot load as a causal LM."""
    import gguf

    writer = gguf.GGUFWriter(path, arch)
    writer.add_block_count(1)
    writer.add_context_length(64)
    writer.add_embedding_length(8)
    writer.add_head_count(2)
    writer.add_tokenizer_model("gpt2")
    writer.add_token_list(["a", "b", "ab", "<eos>"])
    writer.add_token_types([1, 1, 1, 3])
    writer.add_token_merges(["a b"])
    writer.add_eos_token_id(3)
    writer.add_tensor("token_embd.weight", np.zeros((4, 8), dtype=np.float32))
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()


def snapshot(root):
    """Every file and folder under ``root`` with file sizes: what a failed run must leave unchanged."""
    found = {}
    for folder, dirs, files in os.walk(root):
        for d in dirs:
            found[os.path.relpath(os.path.join(folder, d), root)] = "dir"
        for name in files:
            path = os.path.join(folder, name)
            found[os.path.relpath(path, root)] = os.path.getsize(path)
    return found


# (id, files to create in <tmp>/data: name -> write_atomic kwargs, extra CLI args, fragments of the message)
CASES = [
    ("item_text_field not set", {"set": {}}, ["--dataset=set", "--item_text_field=<unset>"],
     ["item_text_field is not set", "name the .item column"]),
    ("item_text_field not a column", {"set": {}}, ["--dataset=set", "--item_text_field=name"],
     ["item_text_field 'name' is not a column", "(columns: item_id, title)", "set item_text_field to one of them"]),
    ("no .item file", {"set": {"items": False}}, ["--dataset=set"],
     ["no item file at", "add set.item"]),
    ("empty title", {"set": {"items": titled("")}}, ["--dataset=set"],
     ["1 items have an empty 'title' (e.g. item 3)", "set item_text_fallback"]),
    ("whitespace-only title", {"set": {"items": titled("   ")}}, ["--dataset=set"],
     ["1 items have an empty 'title' (e.g. item 3)", "give them a title"]),
    ("interacted items without a title row", {"set": {"items": titled("x")[:-6]}},
     ["--dataset=set", "--filter_inter_by_user_or_item=False"],
     ["2 items have no row in", "(e.g. item 15)", "add their titles, drop their interactions or set item_text_fallback"]),
    ("every user has one interaction", {"set": {"inter": history(range(1, 20), 1)}}, ["--dataset=set"],
     ["the train split of data set set is empty", "at least 2 interactions", "add interactions"]),
    ("no user has three interactions", {"set": {"inter": history(range(1, 20), 2)}}, ["--dataset=set"],
     ["the valid split of data set set is empty", "at least 3 interactions"]),
    ("filters leave nothing", {"set": {}}, ["--dataset=set", "--user_inter_num_interval=[100,inf)"],
     ["no interactions of data set set are left after filtering", "loosen these filters"]),
    ("topk above num_beams", {"set": {}}, ["--dataset=set", "--topk=[5,10,12]"],
     ["topk 12 exceeds num_beams 10", "raise num_beams to at least 12 or lower topk"]),
    ("topk above the catalogue", {"set": {"items": titled("x")[:8], "inter": history(range(1, 5), 4)}},
     ["--dataset=set", "--topk=[5,10]"],
     ["topk 10 exceeds the 8 items of data set set", "lower topk to at most 8"]),
    ("full-ranking metric AUC", {"set": {}}, ["--dataset=set", "--metrics=['Recall','AUC']"],
     ["metric AUC needs a score for every item", "use top-k metrics"]),
    ("unknown metric", {"set": {}}, ["--dataset=set", "--metrics=['NDGC']"],
     ["unknown metric 'NDGC'", "NDCG"]),
    ("unknown model", {"set": {}}, ["--dataset=set", "--model=LLMSML"],
     ["unknown model 'LLMSML'", "use LLMMSL"]),
    ("llm_path folder missing", {"set": {}}, ["--dataset=set", "--llm_path={tmp}/no-such-model"],
     ["llm_path", "no-such-model does not exist", "give a model directory, a .gguf file or a hub id"]),
    ("llm_path .gguf missing", {"set": {}}, ["--dataset=set", "--llm_path={tmp}/no-such.gguf"],
     ["no-such.gguf does not exist", "point it at a .gguf file"]),
    ("file named .gguf that is not GGUF", {"set": {}}, ["--dataset=set", "--llm_path={tmp}/text.gguf"],
     ["could not load a causal LM", "not a GGUF file", "set llm_path to a causal language model"]),
    ("GGUF of a non-causal architecture", {"set": {}}, ["--dataset=set", "--llm_path={tmp}/bert.gguf"],
     ["could not load a causal LM", "architecture bert is not supported", "set llm_path to a causal language model"]),
    ("hub id without network", {"set": {}}, ["--dataset=set", "--llm_path=nobody-xyz/no-such-model"],
     ["could not load a causal LM from nobody-xyz/no-such-model", "hub ids need network"]),
    ("YAML that does not parse", {"set": {}}, ["--dataset=set", "--config_files={tmp}/broken.yaml"],
     ["broken.yaml is not valid YAML at line 2", "fix its syntax"]),
    ("YAML that is not a mapping", {"set": {}}, ["--dataset=set", "--config_files={tmp}/list.yaml"],
     ["list.yaml must be a mapping of key: value lines"]),
    ("num_beams: ten", {"set": {}}, ["--dataset=set", "--num_beams=<unset>", "--config_files={tmp}/ten.yaml"],
     ["num_beams must be a positive integer, not 'ten'"]),
    ("lora_r: -1", {"set": {}}, ["--dataset=set", "--lora_r=-1"],
     ["lora_r must be a positive integer, not -1"]),
    ("lora_alpha: x", {"set": {}}, ["--dataset=set", "--lora_alpha=x"],
     ["lora_alpha must be a positive number, not 'x'"]),
    ("tau: hot", {"set": {}}, ["--dataset=set", "--tau=hot"],
     ["tau must be a number, not 'hot'"]),
    ("llm_loss: focal", {"set": {}}, ["--dataset=set", "--llm_loss=focal"],
     [f"llm_loss must be {' or '.join(OBJECTIVES)}, not 'focal'"]),
    ("epochs: ten", {"set": {}}, ["--dataset=set", "--epochs=ten"],
     ["epochs must be an integer >= 0, not 'ten'", "--epochs=10"]),
    ("learning_rate: fast", {"set": {}}, ["--dataset=set", "--learning_rate=fast"],
     ["learning_rate must be a number >= 0.0, not 'fast'"]),
    ("train_batch_size: big", {"set": {}}, ["--dataset=set", "--train_batch_size=big"],
     ["train_batch_size must be an integer >= 1, not 'big'"]),
    ("topk: 0", {"set": {}}, ["--dataset=set", "--topk=0"],
     ["topk must be a positive integer or a list of them, not 0"]),
    ("data set not on disk, no network", {}, ["--dataset=ghost", "--data_path={tmp}/data/not-yet/deeper",
                                              "--download_url=http://127.0.0.1:9/ghost.zip"],
     ["data set ghost is not on disk and could not be downloaded from http://127.0.0.1:9/ghost.zip",
      "put ghost.inter (and ghost.item) in RecBole's atomic format into"]),
    ("no timestamp column for the time-ordered split", {"set": {"times": False}},
     ["--dataset=set", "--load_col=<unset>", "--eval_args={'split': {'LS': 'valid_and_test'}, 'order': 'TO'}"],
     ["set.inter has no timestamp column, which the time-ordered split (eval_args order: TO) needs",
      "add a timestamp:float column, or split at random with eval_args: {order: RO}"]),
    ("title beginning with a double quote", {"set": {"items": titled('"Til There Was You')}}, ["--dataset=set"],
     ["line 4 of", "set.item: title begins with a double quote", "remove title from load_col"]),
    ("one item, two different titles", {"set": {"items": titled("x") + [(3, "Another title")]}},
     ["--dataset=set", "--load_col={'inter': ['user_id', 'item_id', 'timestamp']}"],
     ["1 items have several rows with different titles", "item 3 on lines 4 and 22", "keep one row per item"]),
    ("blank and nan timestamps", {"set": {"inter": history()[:-2] + [(8, 15, ""), (8, 16, "nan")]}},
     ["--dataset=set"],
     ["2 interactions in", "have a blank or non-numeric timestamp (e.g. line 64: '')",
      "RecBole would fill in the mean", "fix or drop those lines"]),
    ("prompt longer than max_seq_length", {"set": {}}, ["--dataset=set", "--max_seq_length=40"],
     ["does not fit the context of 40 tokens", "raise max_seq_length to at least"]),
    ("max_seq_length above the backbone's context", {"set": {}}, ["--dataset=set", "--max_seq_length=100000"],
     ["max_seq_length 100000 exceeds the backbone's context of 2048 tokens", "set max_seq_length to at most 2048"]),
]


@pytest.fixture
def workspace(tmp_path, tiny_llm_dir, monkeypatch):
    """tmp_path/data (data sets), tmp_path/saved (checkpoint_dir), tmp_path/cwd (RecBole's ./log), side files."""
    import huggingface_hub.constants

    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)  # as on a machine without network
    (tmp_path / "data").mkdir()
    (tmp_path / "cwd").mkdir()
    monkeypatch.chdir(tmp_path / "cwd")
    (tmp_path / "text.gguf").write_text("a text file, not GGUF\n")
    write_gguf(str(tmp_path / "bert.gguf"), "bert")
    (tmp_path / "broken.yaml").write_text("epochs: [1, 2\nfoo: : bar\n")
    (tmp_path / "list.yaml").write_text("- epochs\n- 1\n")
    (tmp_path / "ten.yaml").write_text('num_beams: "ten"\n')
    return tmp_path


def base_args(tmp, llm):
    return ["--model=LLMMSL", f"--llm_path={llm}", f"--data_path={tmp}/data", f"--checkpoint_dir={tmp}/saved",
            "--item_text_field=title", LOAD_COL, "--epochs=1", "--train_batch_size=8", "--micro_batch_size=4",
            "--num_beams=10", "--topk=[5,10]", "--eval_max_users=3", "--show_progress=False", "--log_wandb=False"]


@pytest.mark.parametrize("files, extra, fragments", [pytest.param(*c[1:], id=c[0]) for c in CASES])
def test_bad_input_stops_with_one_line_naming_the_fix(workspace, tiny_llm_dir, capsys, files, extra, fragments):
    tmp = str(workspace)
    for name, kwargs in files.items():
        write_atomic(os.path.join(tmp, "data"), name, **kwargs)
    before = snapshot(tmp)
    extra = [a.replace("{tmp}", tmp) for a in extra]
    dropped = {a.split("=")[0] for a in extra if a.endswith("=<unset>")}
    args = [a for a in base_args(tmp, tiny_llm_dir) if a.split("=")[0] not in dropped]
    args += [a for a in extra if not a.endswith("=<unset>")]  # later flags win
    assert main(args) == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err
    lines = [line for line in err.splitlines() if line.strip()]
    assert lines and lines[-1].startswith("error: ")
    assert [line for line in lines if line.startswith("error")] == [lines[-1]]  # exactly one error line
    for fragment in fragments:
        assert fragment in lines[-1], lines[-1]
    after = snapshot(tmp)
    new = {p for p in set(after) - set(before) if not p.startswith("cwd" + os.sep)}  # ./log is RecBole's log
    assert new <= {"saved"}, f"left behind: {sorted(new)}"  # at most an empty checkpoint_dir
    assert {p: s for p, s in after.items() if p in before} == before  # data files untouched


def test_config_error_is_the_python_api_error(tiny_llm_dir, tmp_path):
    """The same checks raise :class:`ConfigError` (a ValueError) from the Python API, one line each."""
    from recbole_msl import run

    write_atomic(str(tmp_path), "set", items=titled(" "))
    cfg = {"llm_path": tiny_llm_dir, "data_path": str(tmp_path), "item_text_field": "title", "num_beams": 10,
           "load_col": {"inter": ["user_id", "item_id", "timestamp"], "item": ["item_id", "title"]},
           "checkpoint_dir": str(tmp_path / "saved"), "show_progress": False}
    with pytest.raises(ConfigError, match=r"empty 'title'.*item_text_fallback") as info:
        run("LLMMSL", "set", config_dict=cfg)
    assert "\n" not in str(info.value) and isinstance(info.value, ValueError)
    # the fix the message names works: a fallback text fills the blank title
    config = Config(model="LLMMSL", dataset="set", config_dict={**cfg, "item_text_fallback": "Item {item_id}"})
    dataset = create_dataset(config)
    titles = item_titles(config, dataset)
    assert titles[dataset.field2token_id[dataset.iid_field]["3"]] == "Item 3"


def _prepared(tmp_path, name, load_col=None, **files):
    write_atomic(str(tmp_path), name, **files)
    config = Config(model="LLMMSL", dataset=name, config_dict={
        "data_path": str(tmp_path), "item_text_field": "title", "num_beams": 10,
        "load_col": load_col or {"inter": ["user_id", "item_id", "timestamp"], "item": ["item_id", "title"]}})
    dataset = create_dataset(config)
    return config, dataset


def test_a_few_single_interaction_users_are_dropped_with_a_warning(tmp_path, caplog):
    """Decision: users with a single interaction are handled as RecBole does, plus a warning.

    RecBole's sequential split builds one (history, next item) sequence per interaction after a
    user's first, so a lone interaction gives no training, validation or test sequence. Those
    users are simply left out (their item stays in the catalogue, so it can still be recommended),
    and a warning says how many. Only when nothing is left for a split (every user has one
    interaction, or none has three) does the run stop, with the one-line error of the table above.
    """
    inter = history() + [(50, 3, 1), (51, 19, 1)]
    config, dataset = _prepared(tmp_path, "lone", inter=inter)
    with caplog.at_level(logging.WARNING):
        train, valid, test = data_preparation(config, dataset)
    assert any("2 of 10 users of data set lone have a single interaction" in r.getMessage() for r in caplog.records)
    tokens = dataset.field2token_id[dataset.uid_field]
    lone = {tokens["50"], tokens["51"]}
    for split in (train, valid, test):
        users = set(split._dataset.inter_feat[dataset.uid_field].tolist())
        assert users and not users & lone
    assert len(valid._dataset) == len(test._dataset) == 8  # one target each for the 8 full users


def test_interactions_of_items_without_title_row_are_dropped_by_recbole(tmp_path):
    """With RecBole's default ``filter_inter_by_user_or_item: True`` interactions of items missing
    from the .item file are removed before LLMMSL sees them (RecBole's documented behaviour), so
    every remaining item has a title; with that filter off the table's "have no row" error applies."""
    items = titled("x")[:-6]  # items 15..20 have no row; users watch items 2..16
    config, dataset = _prepared(tmp_path, "partial", items=items)
    kept = set(dataset.inter_feat[dataset.iid_field].tolist())
    assert kept and all(int(dataset.id2token(dataset.iid_field, i)) <= 14 for i in kept)
    titles = item_titles(config, dataset)
    assert all(t for t in titles[1:])


@pytest.mark.parametrize("model", ["LLMMSL", "SASRec"])
def test_own_data_set_with_only_item_text_field_runs(model, tiny_llm_dir, tmp_path):
    """An .inter with a timestamp and an .item, and no load_col: the sequential split gets its timestamp, so each
    user's test target is their latest item even though the file lists the newest lines first; LLMMSL's titles
    are the .item file's title column, each on its own item."""
    from recbole_msl import run

    write_atomic(str(tmp_path), "own", inter=history()[::-1])  # user u watches u+1 .. u+8; newest line first
    cfg = {"data_path": str(tmp_path), "item_text_field": "title", "llm_path": tiny_llm_dir, "epochs": 1,
           "train_batch_size": 8, "num_beams": 10, "eval_max_users": 3, "checkpoint_dir": str(tmp_path / "saved"),
           "show_progress": False, "show_examples": 1 if model == "LLMMSL" else 0, "MAX_ITEM_LIST_LENGTH": 10}
    if model == "SASRec":
        cfg.update(hidden_size=16, inner_size=32, n_layers=1, n_heads=1)
    result = run(model, "own", config_dict=cfg, keep_test_hits=True)
    users, targets = result["test_hits"]["users"], result["test_hits"]["targets"]
    assert len(set(users)) == len(users) == 3 and set(users) <= {str(u) for u in range(1, 9)}
    assert targets == [str(int(u) + 8) for u in users]  # the latest item by timestamp, not the file's last line
    if model == "LLMMSL":
        (example,) = result["examples"]  # the first test user: the titles of its history and target
        first = int(users[0])
        assert example["target"] == f"Movie number {first + 8}"
        assert example["history"] == [f"Movie number {first + k}" for k in range(3, 8)]  # its last 5, oldest first


def test_identical_repeated_item_rows_are_read_once_with_a_warning(tmp_path, caplog):
    config, dataset = _prepared(tmp_path, "twice", items=titled("x") + [(5, "Movie number 5")],
                                load_col={"inter": ["user_id", "item_id", "timestamp"]})
    with caplog.at_level(logging.WARNING):
        titles = item_titles(config, dataset)
    assert titles[dataset.field2token_id[dataset.iid_field]["5"]] == "Movie number 5"
    assert any("1 items appear on more than one line" in r.getMessage() for r in caplog.records)
