"""A normal (non-editable) install works from any directory: the wheel holds every module and the property
files, and its `recbole-msl` command trains and recommends outside the checkout."""

import os
import pathlib
import re
import subprocess
import sys
import sysconfig
import zipfile

import pytest

ROOT = pathlib.Path(__file__).parents[1]
pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def wheel(tmp_path_factory):
    out = tmp_path_factory.mktemp("wheel")
    subprocess.run([sys.executable, "-m", "pip", "wheel", ".", "--no-deps", "--no-build-isolation", "-q",
                    "-w", str(out)], check=True, cwd=str(ROOT))
    return next(out.glob("recbole_msl-*.whl"))


@pytest.fixture(scope="module")
def installed(wheel, tmp_path_factory):
    """A throwaway venv with the wheel, reusing this environment's dependencies through a .pth file
    (the editable install's own finder is not loaded from there, so the wheel's copy is the one imported)."""
    venv = tmp_path_factory.mktemp("venv")
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    site = next(venv.glob("lib/python*/site-packages"))
    (site / "deps.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    subprocess.run([sys.executable, "-m", "pip", "--python", str(venv / "bin" / "python"), "install", "-q",
                    "--no-deps", str(wheel)], check=True)
    return venv


def test_wheel_holds_every_module_and_the_property_files(wheel):
    names = set(zipfile.ZipFile(wheel).namelist())
    sources = {str(p.relative_to(ROOT)) for p in (ROOT / "recbole_msl").rglob("*.py")}
    assert sources <= names, sorted(sources - names)
    properties = {"recbole_msl/" + str(p.relative_to(ROOT)) for p in (ROOT / "properties").rglob("*.yaml")}
    assert properties <= names, sorted(properties - names)


def test_installed_package_imports_every_module_from_elsewhere(installed, tmp_path):
    modules = sorted(str(p.relative_to(ROOT).with_suffix("")).replace(os.sep, ".")
                     for p in (ROOT / "recbole_msl").rglob("*.py") if p.name not in ("__main__.py",))
    code = ("import importlib, recbole_msl; "
            f"[importlib.import_module(m) for m in {modules!r}]; print(recbole_msl.__file__)")
    done = subprocess.run([str(installed / "bin" / "python"), "-c", code], cwd=tmp_path, capture_output=True,
                          text=True, timeout=300, check=False)
    assert done.returncode == 0, done.stderr[-3000:]
    assert str(installed) in done.stdout and str(ROOT) not in done.stdout  # the wheel's copy, not the checkout


def test_installed_command_trains_and_recommends_outside_the_checkout(installed, tiny_llm_dir, tmp_path):
    command = installed / "bin" / "recbole-msl"
    train = subprocess.run([str(command), "train", "--model=LLMMSL", "--dataset=ml-100k", "--profile=cpu",
                            f"--llm_path={tiny_llm_dir}", "--epochs=1", "--train_samples_per_epoch=8",
                            "--train_batch_size=8", "--eval_sample_users=3", "--log_wandb=False"],
                           cwd=tmp_path, capture_output=True, text=True, timeout=600, check=False)
    assert train.returncode == 0, train.stderr[-3000:]
    checkpoint = re.search(r"checkpoint: (\S+)", train.stdout).group(1)
    assert checkpoint.startswith(str(tmp_path))  # saved/ under the working directory, not the checkout
    recommend = subprocess.run([str(command), "recommend", f"--checkpoint={checkpoint}", "--history=1,50,172",
                                "--topk=3"], cwd=tmp_path, capture_output=True, text=True, timeout=600, check=False)
    assert recommend.returncode == 0, recommend.stderr[-3000:]
    rows = recommend.stdout.strip().splitlines()
    assert [row.split()[0] for row in rows] == ["1", "2", "3"]
    assert not {row.split()[1] for row in rows} & {"1", "50", "172"}  # new items only
