"""Every command a page shows was run (or says why not), and its output file names that very command."""

from __future__ import annotations

import importlib.util
import os
import shutil

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _tool():
    spec = importlib.util.spec_from_file_location("doc_commands", os.path.join(ROOT, "tools", "doc_commands.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


doc_commands = _tool()


def test_every_shown_command_has_an_output_or_a_reason():
    assert doc_commands.problems() == []


def test_the_index_page_is_the_registry():
    with open(os.path.join(ROOT, "docs", "runs", "index.md"), encoding="utf-8") as f:
        assert f.read() == doc_commands.index_page(doc_commands.load_registry()), \
            "docs/runs/index.md is stale: python tools/doc_commands.py index"


def test_commands_are_read_as_a_shell_reads_them():
    text = ("```bash\n# a comment line\nrecbole-msl train --a=1 \\\n    --b=2   # why\n\nmake run\n```\n"
            "```python\nprint('not a command')\n```\n```yaml\nkey: value\n```\n")
    assert doc_commands.commands_in(text) == ["recbole-msl train --a=1 --b=2", "make run"]


@pytest.fixture
def copy_of_docs(tmp_path):
    shutil.copy(os.path.join(ROOT, "README.md"), tmp_path / "README.md")
    shutil.copytree(os.path.join(ROOT, "docs"), tmp_path / "docs")
    return tmp_path


def test_a_new_command_on_a_page_is_caught(copy_of_docs):
    page = copy_of_docs / "docs" / "getting-started.md"
    page.write_text(page.read_text() + "\n```bash\nrecbole-msl train --model=GRU4Rec --dataset=ml-100k\n```\n")
    found = doc_commands.problems(str(copy_of_docs))
    assert any("recbole-msl train --model=GRU4Rec --dataset=ml-100k" in p and "not in" in p for p in found)


def test_an_output_of_another_command_is_caught(copy_of_docs):
    target = copy_of_docs / "docs" / "runs" / "convert-books.txt"
    lines = target.read_text().splitlines()
    target.write_text("\n".join(["$ recbole-msl convert amazon2018 --reviews other.json.gz"] + lines[1:]))
    found = doc_commands.problems(str(copy_of_docs))
    assert any("convert-books.txt was written by" in p for p in found)


def test_a_missing_output_is_caught(copy_of_docs):
    os.remove(copy_of_docs / "docs" / "runs" / "recommend.txt")
    assert any("recommend" in p and "does not exist" in p for p in doc_commands.problems(str(copy_of_docs)))
