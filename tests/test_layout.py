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


# ----------------------------------------------------------------------------- seams
def test_the_trainer_is_imported_only_by_what_trains():
    """trainer/ holds LLMMSL's training loop; only the lookup that hands out trainers imports it."""
    allowed = {os.path.join("recbole_seam", "registry.py")}
    importers = {m for m in _modules() if not m.startswith("trainer" + os.sep)
                 and any(n == "recbole_msl.trainer" or n.startswith("recbole_msl.trainer.") for n in _imports(m))}
    assert importers == allowed


@pytest.mark.parametrize("module", sorted(m for m in _modules() if not m.startswith("lm" + os.sep)))
def test_peft_and_transformers_are_imported_only_under_lm(module):
    outside = {n for n in _imports(module) if n.split(".")[0] in {"transformers", "peft", "accelerate", "tokenizers"}}
    assert not outside, f"{module} imports {sorted(outside)}"


# Attributes set on objects other than ``self``, each with why it is no patch of someone else's object. Objects of
# this package's own classes (any attribute): (module, variable) -> the class
OWN_OBJECTS = {
    ("cli.py", "spec"): "ComparisonSpec", ("cli.py", "run"): "RunSpec",
    ("trainer/resume.py", "trainer"): "LLMMSLTrainer (restored from its resume folder)",
    ("compare/curve.py", "trainer"): "LLMMSLTrainer", ("model/objectives.py", "model"): "LLMMSL",
    ("convert/pipeline.py", "report"): "ConversionReport", ("convert/sliding_window.py", "report"): "ConversionReport",
    ("convert/pipeline.py", "data"): "SourceData", ("convert/report.py", "stats"): "TitleStats",
    ("quick_start.py", "config"): "Config (run_stem)", ("recbole_seam/assistant.py", "aconfig"): "Config (run_stem)",
}
# Single attributes: a library's documented way to set them, or data added without replacing anything
ATTRIBUTE_ASSIGNMENTS = {
    ("distributed.py", "param.grad"),  # torch: a parameter's gradient is set this way
    ("recbole_seam/data_checks.py", "frame.columns"),  # pandas: a frame's columns are renamed this way
    ("lm/backbone.py", "tokenizer.pad_token"),  # transformers: the documented setter
}


def _attribute_assignments(relpath: str) -> set[str]:
    with open(os.path.join(PACKAGE, relpath), encoding="utf-8") as f:
        tree = ast.parse(f.read())
    found = set()
    for node in ast.walk(tree):
        targets = node.targets if isinstance(node, ast.Assign) else [node.target] if isinstance(
            node, (ast.AugAssign, ast.AnnAssign)) else []
        for target in targets:
            for part in ast.walk(target):
                if isinstance(part, ast.Attribute) and isinstance(part.ctx, ast.Store):
                    base = ast.unparse(part.value)
                    if base != "self" and not base.startswith("self."):
                        found.add(f"{base}.{part.attr}")
    return found


def test_no_object_is_patched_at_run_time_outside_compat():
    """Replacing a method or attribute of another library's object (``dataset.build = ...``, a module's ``tqdm``,
    a loader's sampler, a config's attention implementation) belongs in a compat.py, where a test watches the
    patched name; everywhere else only our own objects' attributes and documented setters are assigned."""
    found = {(m.replace(os.sep, "/"), a) for m in _modules() if os.path.basename(m) != "compat.py"
             for a in _attribute_assignments(m)}
    unexplained = {(m, a) for m, a in found - ATTRIBUTE_ASSIGNMENTS if (m, a.split(".")[0]) not in OWN_OBJECTS}
    assert unexplained == set(), "new attribute assignments: say why each is no patch"
    used = ATTRIBUTE_ASSIGNMENTS | {(m, a.split(".")[0]) for m, a in found}
    assert (ATTRIBUTE_ASSIGNMENTS | set(OWN_OBJECTS)) - used == set(), "stale entries: remove them"


def test_the_names_compat_patches_still_exist():
    """A transformers release that renames what lm/compat.py patches must fail here, not silently un-patch."""
    import importlib

    from recbole_msl.lm.compat import PATCHED

    for module, name in PATCHED:
        assert hasattr(importlib.import_module(module), name), f"{module}.{name} is gone: update lm/compat.py"


def test_the_checker_sees_patches():
    """The rule above would pass vacuously if assignments to other objects' attributes were not found."""
    assert "gguf_loading.tqdm" in _attribute_assignments(os.path.join("lm", "compat.py"))
    assert "tokenizer.pad_token" in _attribute_assignments(os.path.join("lm", "backbone.py"))
