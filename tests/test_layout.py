"""The package's parts keep their borders: the core knows no model framework, and nothing below the
command line imports the comparison reports. Read from the source (imports in function bodies too)."""

import ast
import os

import pytest

PACKAGE = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "recbole_msl")
FRAMEWORKS = {"transformers", "peft", "recbole", "accelerate", "tokenizers"}


def _modules(folder=""):
    root = os.path.join(PACKAGE, folder)
    for dirpath, _, files in os.walk(root):
        for name in files:
            if name.endswith(".py"):
                yield os.path.relpath(os.path.join(dirpath, name), PACKAGE)


def _imports(relpath: str) -> set[str]:
    """Absolute dotted names of everything ``relpath`` imports (relative imports resolved)."""
    with open(os.path.join(PACKAGE, relpath), encoding="utf-8") as f:
        tree = ast.parse(f.read())
    package = ["recbole_msl", *os.path.dirname(relpath).split(os.sep)] if os.path.dirname(relpath) else ["recbole_msl"]
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = package[:len(package) - node.level + 1] if node.level else []
            module = ".".join(base + ([node.module] if node.module else []))
            names.add(module)
            names.update(f"{module}.{alias.name}" for alias in node.names)
    return names


@pytest.mark.parametrize("module", sorted(_modules("core")))
def test_core_imports_torch_and_numpy_only(module):
    outside = {n for n in _imports(module) if n.split(".")[0] in FRAMEWORKS
               or (n.startswith("recbole_msl.") and not n.startswith("recbole_msl.core"))}
    assert not outside, f"{module} imports {sorted(outside)}"


@pytest.mark.parametrize("module", sorted(m for m in _modules() if not m.startswith("compare") and m != "cli.py"))
def test_only_the_command_line_imports_the_comparison_reports(module):
    assert not {n for n in _imports(module) if n.startswith("recbole_msl.compare")}, module


def test_chart_and_report_do_not_import_each_other():
    chart, report = _imports(os.path.join("compare", "chart.py")), _imports(os.path.join("compare", "report.py"))
    assert not ({n for n in chart if n.startswith("recbole_msl.compare.report")}
                and {n for n in report if n.startswith("recbole_msl.compare.chart")})


def test_the_checker_sees_relative_imports():
    """The rules above would pass vacuously if relative imports were not resolved."""
    assert "recbole_msl.lm.kv_buffers.BufferedLayer" in _imports(os.path.join("lm", "beam_attention.py"))
    assert "recbole_msl.core.trie.TokenTrie" in _imports(os.path.join("model", "llmmsl.py"))
