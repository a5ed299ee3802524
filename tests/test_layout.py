"""The package's parts keep their borders: no import circle, no arrow from a lower layer to a higher one, the core
knows no model framework, and nothing below the command line imports the comparison reports. Read from the source
(imports in function bodies too)."""

import ast
import os
import re

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


# ----------------------------------------------------------------------------- the import graph
# The layers, lowest first (docs/layout.md shows them): a module imports only from its own layer and the ones below.
# A name is a top-level module (without .py) or a sub-package; the package's own __init__ is "__init__".
LAYERS = [
    ("base", {"core", "errors", "validate", "files", "folders", "stopping", "summary", "yaml_files", "atomic_files",
              "item_text"}),
    ("records", {"evaluation", "distributed", "checkpoint"}),
    ("lm", {"lm"}),
    ("model", {"model"}),
    ("trainer", {"trainer"}),
    ("seam", {"recbole_seam"}),
    ("run", {"quick_start", "run_checks", "run_result", "recommender"}),
    ("commands", {"compare", "convert", "cli", "__main__", "__init__"}),
]
# Upward arrows that are known and being removed, each with why it is still there (a test fails once it is gone)
KNOWN_UPWARD: dict = {}  # (module, imported module) -> why, for an upward arrow on its way out (none today)
# Imports inside functions that carry no comment of their own: (module, imported module) -> why it is lazy
LAZY_ALLOWED = {
    ("trainer/__init__.py", "recbole_msl.trainer.llmmsl_trainer"): "transformers and peft, on first use (its docstring)",
    ("trainer/resume.py", "recbole_msl.checkpoint"): "checkpoint import inside the resume path",
    ("trainer/resume.py", "safetensors"): "safetensors, only when a resume folder is written or read",
    ("trainer/resume.py", "safetensors.torch"): "safetensors, only when a resume folder is written or read",
    ("model/llmmsl.py", "recbole.data.interaction"): "RecBole's Interaction, only when a batch is built here",
    ("lm/adapter_io.py", "peft"): "peft, only when an adapter is read or written",
    ("lm/backbone.py", "transformers"): "transformers, only when a backbone is loaded (bitsandbytes for 4/8 bits)",
    ("lm/backbone.py", "peft"): "peft, only when LoRA is attached",
    ("lm/compat.py", "transformers"): "transformers' GGUF reader, only when it is patched",
    ("lm/compat.py", "transformers.utils"): "transformers' logging, only when it is quieted",
    ("lm/gguf_cache.py", "transformers"): "transformers, only when a .gguf backbone is dequantised",
    ("lm/gguf_cache.py", "json"): "only when a .gguf backbone is dequantised",
    ("lm/gguf_cache.py", "torch"): "only when a .gguf backbone is dequantised",
    ("lm/gguf_cache.py", "safetensors.torch"): "only when a .gguf backbone is dequantised",
    ("compare/stats.py", "scipy"): "scipy, only when a test statistic is computed",
    ("compare/user_metrics.py", "recbole.evaluator.base_metric"): "RecBole's metrics, only when they are recomputed",
    ("compare/user_metrics.py", "recbole.evaluator.register"): "RecBole's metrics, only when they are recomputed",
    ("distributed.py", "recbole.utils"): "RecBole's ModelType, only for sharded evaluation",
    ("errors.py", "errno"): "only when a disk error is explained",
}


def _module_name(relpath: str) -> str:
    parts = ["recbole_msl", *relpath[:-3].split(os.sep)]
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {_module_name(m): m for m in _modules()}


def _import_nodes(relpath: str):
    """(node, absolute module, imported names, inside a function) for every import statement of ``relpath``."""
    with open(os.path.join(PACKAGE, relpath), encoding="utf-8") as f:
        tree = ast.parse(f.read())
    package = _module_name(relpath).split(".")
    if not relpath.endswith("__init__.py"):
        package = package[:-1]
    lazy = {id(n) for fn in ast.walk(tree) if isinstance(fn, (ast.FunctionDef, ast.AsyncFunctionDef))
            for n in ast.walk(fn)}
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield node, alias.name, [], id(node) in lazy
        elif isinstance(node, ast.ImportFrom):
            base = package[:len(package) - node.level + 1] if node.level else []
            yield node, ".".join(base + ([node.module] if node.module else [])), [a.name for a in node.names], \
                id(node) in lazy


def _graph() -> dict[str, set[str]]:
    """Module -> the package's modules it imports (``from pkg import sub`` is an arrow to ``pkg.sub``). An arrow to
    a package that holds the module (its parents' ``__init__``, which Python runs first anyway) is left out."""
    graph = {}
    for name, relpath in MODULES.items():
        targets = set()
        for _, module, names, _ in _import_nodes(relpath):
            for target in ([f"{module}.{n}" for n in names if f"{module}.{n}" in MODULES] or [module]):
                while target and target not in MODULES:
                    target = target.rpartition(".")[0]
                if target and target != name and not name.startswith(target + "."):
                    targets.add(target)
        graph[name] = targets
    return graph


def _circles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components of more than one module (Tarjan), each sorted."""
    index, low, stack, on_stack, found = {}, {}, [], set(), []

    def visit(v):
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph.get(v, ())):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return found


def _layer(module: str) -> int:
    head = module.split(".")[1] if "." in module else "__init__"
    return next(i for i, (_, names) in enumerate(LAYERS) if head in names)


def test_no_import_circle():
    """No circle between modules, counting imports inside functions (which Python would run later, but which
    still tie the modules together)."""
    assert _circles(_graph()) == []


def test_every_module_has_a_layer():
    unplaced = {m for m in MODULES if not any((m.split(".")[1] if "." in m else "__init__") in names
                                              for _, names in LAYERS)}
    assert not unplaced, f"add these to LAYERS (and docs/layout.md): {sorted(unplaced)}"


def _relpath(module: str) -> str:
    return MODULES[module].replace(os.sep, "/")


def test_no_arrow_runs_upward():
    upward = {(_relpath(a), _relpath(b)) for a, targets in _graph().items() for b in targets if _layer(b) > _layer(a)}
    assert upward - set(KNOWN_UPWARD) == set(), "a lower layer imports a higher one: move the code down"
    assert set(KNOWN_UPWARD) - upward == set(), "gone: remove it from KNOWN_UPWARD"


def test_every_import_inside_a_function_says_why():
    """An import inside a function (lazy) is for a dependency that is optional or slow to load where it is not
    needed: a comment on its line or the line above says which, or LAZY_ALLOWED does."""
    unexplained, seen = [], set()
    for relpath in MODULES.values():
        with open(os.path.join(PACKAGE, relpath), encoding="utf-8") as f:
            lines = f.read().split("\n")
        for node, module, _, lazy in _import_nodes(relpath):
            if lazy:
                seen.add((relpath.replace(os.sep, "/"), module))
            if not lazy or (relpath.replace(os.sep, "/"), module) in LAZY_ALLOWED:
                continue
            own = lines[node.lineno - 1]
            above = lines[node.lineno - 2].strip() if node.lineno > 1 else ""
            if "#" not in own and not above.startswith("#"):
                unexplained.append(f"{relpath}:{node.lineno} {module}")
    assert unexplained == [], "say which dependency makes each lazy, or import it at the top"
    assert set(LAZY_ALLOWED) - seen == set(), "no longer lazy: remove it from LAZY_ALLOWED"


def test_the_graph_checker_sees_circles_and_lazy_imports():
    """The rules above would pass vacuously if the graph missed imports in functions or the finder missed circles."""
    graph = _graph()
    assert "recbole_msl.trainer" in graph["recbole_msl.recbole_seam.registry"]  # imported inside get_trainer
    assert "recbole_msl.checkpoint" in graph["recbole_msl.trainer.llmmsl_trainer"]
    assert _circles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert _circles({"a": {"b"}, "b": set()}) == []


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
    ("atomic_files.py", "frame.columns"),  # pandas: a frame's columns are renamed this way
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


# ----------------------------------------------------------------------------- the path of one run, in the docs
def _run_path_names() -> list[str]:
    """The dotted names of docs/layout.md's numbered list under "One run, from `recbole-msl train` ...\"."""
    with open(os.path.join(os.path.dirname(PACKAGE), "docs", "layout.md"), encoding="utf-8") as f:
        text = f.read()
    section = text.split("## One run", 1)[1].split("\n## ", 1)[0]
    steps = [line for line in section.splitlines() if re.match(r"\d+\. ", line)]
    return [name for line in steps for name in re.findall(r"`(recbole_msl(?:\.\w+)+)`", line)]


def test_the_documented_path_of_a_run_names_only_what_exists():
    """docs/layout.md opens with the calls of one run; a renamed or moved function fails here, not in a reader."""
    import importlib

    names = _run_path_names()
    assert len(names) >= 12
    missing = []
    for name in names:
        parts = name.split(".")
        for cut in range(len(parts), 0, -1):  # the longest importable module, then attributes
            try:
                target = importlib.import_module(".".join(parts[:cut]))
            except ImportError:
                continue
            for attr in parts[cut:]:
                target = getattr(target, attr, None)
            if target is None or not (callable(target) or cut == len(parts)):
                missing.append(name)
            break
        else:
            missing.append(name)
    assert missing == [], "update docs/layout.md's path of a run"
