"""Property files for data sets other than ml-100k, and reproducibility of a run."""

import contextlib
import copy
import json
import os
import shutil

import pytest
import torch
from safetensors.torch import load_file

from recbole_msl import run
from recbole_msl.errors import ConfigError
from recbole_msl.model.llmmsl import LLMMSL
from recbole_msl.recbole_seam.config import Config
from recbole_msl.recbole_seam.data import create_dataset, data_preparation

ML1M_ITEMS = os.path.join(os.path.dirname(__file__), "..", "..", "shared", "datasets", "ml-1m-items", "ml-1m.item")


@pytest.mark.skipif(not os.path.isfile(ML1M_ITEMS), reason="needs ../shared/datasets/ml-1m-items beside the checkout")
def test_ml1m_property_file_loads_timestamps_and_titles(tmp_path, tiny_llm_dir):
    folder = tmp_path / "ml-1m"
    folder.mkdir()
    shutil.copy(ML1M_ITEMS, folder / "ml-1m.item")
    # a small interaction file in RecBole's ml-1m layout: 30 users x 8 movies each, in time order
    with open(ML1M_ITEMS, encoding="utf-8") as f:
        item_ids = [line.split("\t")[0] for line in f.read().splitlines()[1:]]
    rows = ["user_id:token\titem_id:token\trating:float\ttimestamp:float"]
    for user in range(1, 31):
        for k in range(8):
            item = item_ids[(user * 7 + k * 13) % len(item_ids)] if k else ("1" if user % 2 else "11")
            rows.append(f"{user}\t{item}\t4\t{978300000 + 100 * k + user}")
    (folder / "ml-1m.inter").write_text("\n".join(rows) + "\n")
    config = Config(model="LLMMSL", dataset="ml-1m", config_dict={"data_path": str(tmp_path), "llm_path": tiny_llm_dir})
    assert config["eval_args"]["order"] == "TO" and "timestamp" in config["load_col"]["inter"]
    dataset = create_dataset(config)
    assert dataset.time_field == "timestamp" and "timestamp" in dataset.inter_feat
    train, _, _ = data_preparation(config, dataset)
    model = LLMMSL(config, train._dataset)
    token2id = dataset.field2token_id[dataset.iid_field]
    assert model.titles[token2id["1"]] == "Toy Story"
    assert model.titles[token2id["11"]] == "The American President"  # "American President, The" in the file
    assert all(not t.endswith(", The") for t in model.titles[1:])


def test_missing_ml1m_without_network_says_where_to_put_files(tmp_path):
    config = Config(model="SASRec", dataset="ml-1m",
                    config_dict={"data_path": str(tmp_path), "download_url": "http://127.0.0.1:9/ml-1m.zip"})
    with pytest.raises(ConfigError, match=r"put ml-1m\.inter .* into") as info:
        create_dataset(config)
    assert "\n" not in str(info.value)
    assert not os.listdir(tmp_path)  # nothing half written


def test_same_seed_gives_identical_adapter_and_metrics(tiny_run_config, tmp_path):
    results = []
    for name in ("a", "b"):
        cfg = {**tiny_run_config, "checkpoint_dir": str(tmp_path / name)}
        results.append(run("LLMMSL", "ml-100k", config_dict=cfg))
    first, second = (load_file(os.path.join(r["saved_model_file"], "adapter_model.safetensors")) for r in results)
    assert first.keys() == second.keys()
    assert all(torch.equal(first[k], second[k]) for k in first)
    assert results[0]["test_result"] == results[1]["test_result"]
    assert results[0]["tau_trace"] == results[1]["tau_trace"]


def test_eval_max_users_keeps_the_first_users_of_valid_and_test():
    def splits(extra):
        config = Config(model="SASRec", dataset="ml-100k", config_dict=extra)
        dataset = create_dataset(config)
        return dataset, data_preparation(config, dataset)

    dataset, (train, valid, test) = splits({"eval_max_users": 7})
    _, (full_train, full_valid, full_test) = splits({})
    assert train._dataset.inter_num == full_train._dataset.inter_num  # training data untouched
    for small, full in ((valid, full_valid), (test, full_test)):
        users = small._dataset.inter_feat[dataset.uid_field].tolist()
        expected = list(dict.fromkeys(full._dataset.inter_feat[dataset.uid_field].tolist()))[:7]
        assert list(dict.fromkeys(users)) == expected


def _users(loader, field) -> list[int]:
    return loader._dataset.inter_feat[field].tolist()


def test_eval_sample_users_is_a_fixed_random_sample_shared_by_runs():
    loaded = create_dataset(Config(model="SASRec", dataset="ml-100k"))

    def splits(extra):
        config = Config(model="SASRec", dataset="ml-100k", config_dict=extra)
        dataset = copy.deepcopy(loaded)  # one load; building the split changes the object
        return dataset.uid_field, data_preparation(config, dataset)

    uid, (train, valid, test) = splits({"eval_sample_users": 50})
    _, (full_train, full_valid, _) = splits({})
    assert train._dataset.inter_num == full_train._dataset.inter_num  # training data untouched
    sample = _users(valid, uid)
    assert len(sample) == len(set(sample)) == 50 and _users(test, uid) == sample  # the same users in both
    everyone = _users(full_valid, uid)
    assert set(sample) < set(everyone) and sample != everyone[:50]  # not the first users
    assert sample == sorted(sample, key=everyone.index)  # in RecBole's order
    _, (_, other_seed, _) = splits({"eval_sample_users": 50, "seed": 7})  # the run's seed does not move it
    assert _users(other_seed, uid) == sample
    _, (_, _, only_valid) = splits({"eval_sample_users": {"valid": 50}})
    assert len(_users(only_valid, uid)) == len(everyone)  # test: every user
    _, (_, rows, _) = splits({"eval_sample_users": 30, "eval_sample_unit": "row", "eval_sample_seed": 3})
    assert len(_users(rows, uid)) == 30 and _users(rows, uid) != sample[:30]
    with pytest.raises(ConfigError, match="either eval_max_users"):
        splits({"eval_sample_users": 50, "eval_max_users": 5})


@contextlib.contextmanager
def _serve_ml_tiny(tmp_path):
    """A loopback HTTP server with ml-100k zipped as ``ml-tiny.zip`` in RecBole's layout.

    Yields (url, requested paths)."""
    import functools
    import http.server
    import threading
    import zipfile

    import recbole

    source = os.path.join(os.path.dirname(recbole.__file__), "dataset_example", "ml-100k")
    served = tmp_path / "served"
    served.mkdir()
    with zipfile.ZipFile(served / "ml-tiny.zip", "w") as archive:
        for suffix in ("inter", "item"):
            archive.write(os.path.join(source, f"ml-100k.{suffix}"), f"ml-tiny.{suffix}")
    requests = []

    class CountingHandler(http.server.SimpleHTTPRequestHandler):
        def do_GET(self):
            requests.append(self.path)
            super().do_GET()

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(CountingHandler, directory=str(served)))
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/ml-tiny.zip", requests
    finally:
        server.shutdown()


def test_missing_data_set_is_downloaded_from_an_overridable_url(tmp_path):
    """A loopback HTTP server serves a zip in RecBole's layout; the download lands whole."""
    with _serve_ml_tiny(tmp_path) as (url, _):
        config = Config(model="SASRec", dataset="ml-tiny", config_dict={
            "data_path": str(tmp_path / "data"), "load_col": {"inter": ["user_id", "item_id", "timestamp"]},
            "download_url": url})
        dataset = create_dataset(config)
    assert dataset.inter_num == 100000
    assert sorted(os.listdir(tmp_path / "data")) == ["ml-tiny"]  # no staging folder left behind
    assert sorted(os.listdir(tmp_path / "data" / "ml-tiny")) == ["ml-tiny.inter", "ml-tiny.item"]


_DOWNLOAD_WORKER = """
import json, os, sys
import recbole_msl
from recbole_msl.recbole_seam.config import Config
from recbole_msl.recbole_seam.data import create_dataset

config = Config(model="SASRec", dataset="ml-tiny", config_dict={
    "data_path": sys.argv[2], "load_col": {"inter": ["user_id", "item_id", "timestamp"]}, "download_url": sys.argv[1]})
print("RESULT " + json.dumps({"rank": int(os.environ["RANK"]), "inters": create_dataset(config).inter_num}))
"""


def test_first_time_download_under_two_processes(tmp_path):
    """torchrun with 2 gloo ranks and no data on disk: rank 0 downloads once, both ranks load it."""
    import subprocess
    import sys

    worker = tmp_path / "worker.py"
    worker.write_text(_DOWNLOAD_WORKER)
    with _serve_ml_tiny(tmp_path) as (url, requests):
        done = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
                               str(worker), url, str(tmp_path / "data")], capture_output=True, text=True, check=False,
                              timeout=600, cwd=str(tmp_path))
    assert done.returncode == 0, done.stderr[-2000:]
    results = sorted((json.loads(line.split("RESULT ", 1)[1]) for line in done.stdout.splitlines() if "RESULT " in line),
                     key=lambda r: r["rank"])
    assert [r["rank"] for r in results] == [0, 1] and all(r["inters"] == 100000 for r in results)
    assert requests == ["/ml-tiny.zip"]  # one download, by rank 0
    assert sorted(os.listdir(tmp_path / "data" / "ml-tiny")) == ["ml-tiny.inter", "ml-tiny.item"]


def test_a_data_path_given_for_ml_100k_is_honoured(tmp_path):
    """RecBole's Config reads ml-100k from its own package whatever data_path says; a copy the user points to is
    what the run reads (without data_path, the package's copy, as before)."""
    from recbole_msl.recbole_seam.config import Config

    given = Config(model="SASRec", dataset="ml-100k", config_dict={"data_path": str(tmp_path)})
    assert given["data_path"] == os.path.join(str(tmp_path), "ml-100k")
    default = Config(model="SASRec", dataset="ml-100k")
    assert os.path.isfile(os.path.join(default["data_path"], "ml-100k.inter"))
