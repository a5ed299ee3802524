"""Every command the documentation shows, and where its real output is.

The pages show commands in ``bash`` blocks; ``docs/runs/commands.yaml`` lists each of them exactly as
shown (continuation lines joined, comments dropped) with one of: ``output``, the file under ``docs/``
holding what that command printed (``docs/runs/<id>.txt``, written by ``run`` below with the date, the
exit code and the machine on its first lines, or a report the command wrote); or ``not_run``, why this
project's machine cannot run it (a GPU, a model or data that needs network). ``tests/test_doc_commands.py``
fails when a page shows a command the file does not list, when an output file is missing, or when its
header names another command, so a page cannot show a command that nobody ran.

    python tools/doc_commands.py list            # every shown command and its status
    python tools/doc_commands.py run ID [ID ...] # run entries in their folder, write docs/runs/<ID>.txt

Inputs that this machine lacks (Amazon's raw files) are written from ml-100k's real ratings and titles in
the source's format by the entry's ``inputs`` (named below); the output file says so.
"""

from __future__ import annotations

import argparse
import glob
import gzip
import json
import os
import platform
import re
import shutil
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
REGISTRY = os.path.join(ROOT, "docs", "runs", "commands.yaml")
PAGES = ["README.md", "docs/*.md"]
SHELL_BLOCKS = ("bash", "sh", "shell", "console")
GENERATED_PAGES = {"docs/options.md", "docs/changelog.md"}  # copies made by `make docs`
HEADER = "$ "  # an output file's first line: "$ " + the command as run


def shown_commands(root: str = ROOT) -> list[tuple[str, str]]:
    """(page, command) for every command line of every shell block, continuations joined, comments dropped."""
    found = []
    for pattern in PAGES:
        for path in sorted(glob.glob(os.path.join(root, pattern))):
            page = os.path.relpath(path, root)
            if page not in GENERATED_PAGES:
                found += [(page, command) for command in commands_in(_read(path))]
    return found


def _read(path: str) -> str:
    with open(path, encoding="utf-8") as f:
        return f.read()


def commands_in(text: str) -> list[str]:
    """The commands of a Markdown text's shell blocks, each normalised by :func:`normalise`."""
    commands, language, pending = [], None, ""
    for line in text.splitlines():
        fence = re.match(r"^\s*```(\w*)", line)
        if fence:
            language = None if language is not None else fence.group(1)
            continue
        if language not in SHELL_BLOCKS:
            continue
        if line.rstrip().endswith("\\"):
            pending += line.rstrip()[:-1] + " "
            continue
        command = normalise(pending + line)
        pending = ""
        if command:
            commands.append(command)
    return commands


def normalise(line: str) -> str:
    """One space between words, no comment, no prompt: what the registry and an output's header compare."""
    line = line.strip()
    if line.startswith("#"):
        return ""
    line = re.sub(r"\s+#\s.*$", "", line)
    return re.sub(r"\s+", " ", line).strip()


def load_registry(path: str = REGISTRY) -> list[dict]:
    import yaml

    with open(path, encoding="utf-8") as f:
        entries = yaml.safe_load(f)["commands"]
    for entry in entries:
        entry["command"] = normalise(entry["command"])
        if "run" in entry:
            entry["run"] = normalise(entry["run"])
    return entries


def output_path(entry: dict) -> str:
    return os.path.join(ROOT, "docs", "runs", f"{entry['id']}.txt")


def problems(root: str = ROOT) -> list[str]:
    """What is wrong between the pages and the registry (empty when every shown command is accounted for)."""
    entries = load_registry(os.path.join(root, "docs", "runs", "commands.yaml"))
    listed = {e["command"]: e for e in entries}
    shown = shown_commands(root)
    found = []
    for page, command in shown:
        if command not in listed:
            found.append(f"{page}: `{command}` is shown but not in docs/runs/commands.yaml (run it, or say why not)")
    shown_set = {command for _, command in shown}
    for entry in entries:
        if entry["command"] not in shown_set:
            found.append(f"docs/runs/commands.yaml: {entry['id']} is shown on no page")
        if ("output" in entry) == ("not_run" in entry):
            found.append(f"docs/runs/commands.yaml: {entry['id']} needs exactly one of output / not_run")
            continue
        if "output" in entry:
            target = os.path.join(root, "docs", entry["output"])
            if not os.path.isfile(target):
                found.append(f"docs/runs/commands.yaml: {entry['id']}: {entry['output']} does not exist")
            elif entry["output"] == f"runs/{entry['id']}.txt":
                first = _read(target).split("\n", 1)[0]
                expected = HEADER + entry.get("run", entry["command"])
                if first != expected:
                    found.append(f"docs/runs/{entry['id']}.txt was written by `{first[2:]}`, not `{expected[2:]}`")
            elif entry["output"].startswith("runs/"):  # another entry's run that ran this command too
                opening = "\n".join(_read(target).split("\n")[:4])
                if entry["command"] not in re.sub(r"\s+", " ", opening):
                    found.append(f"docs/{entry['output']} does not show `{entry['command']}` among its first lines")
    return found


def index_page(entries: list[dict]) -> str:
    """docs/runs/index.md: every shown command, when it ran and where its output is."""
    lines = ["# Commands and their outputs", "",
             "Every command the pages show, with the file that holds what it printed (its first lines give the",
             "date, the exit code and the machine) or why it was not run here. Generated from",
             "`docs/runs/commands.yaml` by `python tools/doc_commands.py index`; `tests/test_doc_commands.py` fails",
             "when a page shows a command that is not listed here.", "",
             "| command | output |", "| --- | --- |"]
    for entry in entries:
        if "output" in entry:
            target = entry["output"][len("runs/"):] if entry["output"].startswith("runs/") else "../" + entry["output"]
            where = f"[{os.path.basename(entry['output'])}]({target})"
        else:
            where = f"not run here: {entry['not_run']}"
        if entry.get("note"):
            where += f" ({entry['note']})"
        lines.append(f"| `{entry['command'].replace('|', chr(92) + '|')}` | {where} |")
    return "\n".join(lines) + "\n"


# ---------------------------------------------------------------- inputs the machine lacks, from ml-100k's files

def _ml100k():
    """(rows [(user, item, rating, unix seconds)], titles {item: title}) of RecBole's shipped ml-100k."""
    import recbole

    folder = os.path.join(os.path.dirname(recbole.__file__), "dataset_example", "ml-100k")
    with open(os.path.join(folder, "ml-100k.inter"), encoding="utf-8") as f:
        next(f)
        rows = [(u, i, float(r), int(float(t))) for u, i, r, t in (line.rstrip("\n").split("\t") for line in f)]
    with open(os.path.join(folder, "ml-100k.item"), encoding="utf-8") as f:
        next(f)
        titles = {cells[0]: cells[1] for cells in (line.rstrip("\n").split("\t") for line in f)}
    return rows, titles


def _gzip_lines(path: str, lines) -> None:
    with gzip.open(path, "wt", encoding="utf-8") as f:
        f.writelines(line + "\n" for line in lines)


YEARS_23 = 725_846_400  # seconds from 1997-09-20 to 2020-09-20: ml-100k's dates moved into Amazon 2023's range


def _inputs_amazon2014(folder, names):
    rows, titles = _ml100k()
    ratings, meta = names
    with open(os.path.join(folder, ratings), "w", encoding="utf-8") as f:
        f.writelines(f"A{u},B{i},{r},{t}\n" for u, i, r, t in rows)
    _gzip_lines(os.path.join(folder, meta), (repr({"asin": f"B{i}", "title": t}) for i, t in titles.items()))


def _inputs_amazon2018(folder, names):
    rows, titles = _ml100k()
    reviews, meta = names
    _gzip_lines(os.path.join(folder, reviews), (json.dumps(
        {"overall": r, "reviewerID": f"A{u}", "asin": f"B{i}", "unixReviewTime": t}) for u, i, r, t in rows))
    _gzip_lines(os.path.join(folder, meta), (json.dumps({"asin": f"B{i}", "title": t}) for i, t in titles.items()))


def _inputs_amazon2023(folder, names):
    rows, titles = _ml100k()
    reviews, meta = names
    _gzip_lines(os.path.join(folder, reviews), (json.dumps(
        {"rating": r, "user_id": f"A{u}", "parent_asin": f"B{i}", "timestamp": 1000 * (t + YEARS_23)})
        for u, i, r, t in rows))
    _gzip_lines(os.path.join(folder, meta), (json.dumps({"parent_asin": f"B{i}", "title": t})
                                             for i, t in titles.items()))


def _inputs_movielens_csv(folder, names):
    rows, titles = _ml100k()
    ratings, movies = names
    with open(os.path.join(folder, ratings), "w", encoding="utf-8") as f:
        f.write("userId,movieId,rating,timestamp\n")
        f.writelines(f"{u},{i},{r},{t}\n" for u, i, r, t in rows)
    with open(os.path.join(folder, movies), "w", encoding="utf-8") as f:
        f.write("movieId,title\n")
        f.writelines(f'{i},"{t.replace(chr(34), chr(34) * 2)}"\n' for i, t in titles.items())


def _inputs_msl_repo(folder, names):
    """The authors' repository (its data folder) as ``MSL/`` from the mirror that ``fetch`` made."""
    mirror = os.environ.get("MSL_REPO", os.path.join(ROOT, "..", ".mirror", "WANGBohaO-jpg+MSL", "repo"))
    target = os.path.join(folder, "MSL")
    os.makedirs(target)
    archive = subprocess.run(["git", "--git-dir", mirror, "archive", "HEAD", "data/Amazon_Books"],
                             capture_output=True, check=True).stdout
    subprocess.run(["tar", "-x", "-C", target], input=archive, check=True)


INPUTS = {"amazon2014": (_inputs_amazon2014, "ml-100k's ratings and titles written as Amazon 2014 files"),
          "amazon2018": (_inputs_amazon2018, "ml-100k's ratings and titles written as Amazon 2018 files"),
          "amazon2023": (_inputs_amazon2023, ("ml-100k's ratings (dates moved 23 years on) and titles written as "
                                              "Amazon 2023 files")),
          "movielens_csv": (_inputs_movielens_csv, "ml-100k's ratings and titles written as MovieLens CSVs"),
          "msl_repo": (_inputs_msl_repo, "the authors' repository (WANGBohaO-jpg/MSL), its data folder")}


# ---------------------------------------------------------------- running an entry

def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown CPU"


def _trimmed(text: str, head: int, tail: int) -> str:
    """Progress bars dropped (carriage-return lines keep their last state); the first and last lines kept."""
    lines = [line.split("\r")[-1] for line in text.replace("\r\n", "\n").split("\n")]
    lines = [line for line in lines if not re.match(r"^\s*(Train|Evaluate|Valid)\s+\d*:?\s*\d+%\|", line)]
    while lines and not lines[-1].strip():
        lines.pop()
    if len(lines) > head + tail + 1:
        lines = lines[:head] + [f"... ({len(lines) - head - tail} lines)"] + lines[-tail:]
    return "\n".join(lines)


def run_entry(entry: dict, note: str = "") -> int:
    """Run ``entry`` (its ``run`` form when the shown one has placeholders) and write its output file."""
    command = entry.get("run", entry["command"])
    env = dict(os.environ, PATH=os.path.join(ROOT, ".venv", "bin") + os.pathsep + os.environ.get("PATH", ""),
               PYTHONUNBUFFERED="1")
    scratch = None
    if entry.get("cwd", "repo") == "scratch":
        scratch = tempfile.mkdtemp(prefix=f"doc-{entry['id']}-")
        cwd = scratch
    else:
        cwd = ROOT
    made = ""
    if "inputs" in entry:
        kind, names = entry["inputs"]["kind"], entry["inputs"]["files"]
        maker, made = INPUTS[kind]
        maker(cwd, names)
    started = time.time()
    clock = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime(started))
    print(f"[{clock}] {entry['id']}: {command}", flush=True)
    done = subprocess.run(["bash", "-c", command], cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                          text=True, timeout=entry.get("timeout_s", 3600), check=False)
    seconds = time.time() - started
    where = "a fresh empty folder (shown as .)" if scratch else "the repository root"
    text = done.stdout
    if scratch:
        text = text.replace(os.path.realpath(scratch), ".").replace(scratch, ".")
    text = text.replace(ROOT + os.sep, "")  # paths relative to the repository root: no folder of this machine
    text = text.replace(os.path.expanduser("~") + os.sep, "~/")  # the backbone cache under the user's home
    lines = [HEADER + command,
             (f"# run {clock} in {where}{'; inputs: ' + made if made else ''}; exit {done.returncode}, "
              f"{seconds:.0f} s wall; {_cpu_model()}, {os.cpu_count()} cores{'; ' + note if note else ''}"),
             _trimmed(text, entry.get("head", 40), entry.get("tail", 40))]
    with open(output_path(entry), "w", encoding="utf-8") as f:
        f.write("\n".join(lines) + "\n")
    if scratch:
        shutil.rmtree(scratch, ignore_errors=True)
    print(f"  exit {done.returncode} in {seconds:.0f} s -> {os.path.relpath(output_path(entry), ROOT)}", flush=True)
    return done.returncode


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="action", required=True)
    sub.add_parser("list", help="every shown command and its status")
    sub.add_parser("index", help="write docs/runs/index.md")
    runner = sub.add_parser("run", help="run entries and write docs/runs/<id>.txt")
    runner.add_argument("ids", nargs="+")
    runner.add_argument("--note", default="", help="a remark for the header, e.g. what else was running")
    args = parser.parse_args(argv)
    entries = load_registry()
    if args.action == "list":
        for entry in entries:
            status = entry.get("output") or f"not run: {entry['not_run']}"
            print(f"{entry['id']:28s} {status}\n    {entry['command']}")
        for problem in problems():
            print("PROBLEM:", problem)
        return 0
    if args.action == "index":
        with open(os.path.join(ROOT, "docs", "runs", "index.md"), "w", encoding="utf-8") as f:
            f.write(index_page(entries))
        return 0
    by_id = {e["id"]: e for e in entries}
    unknown = [i for i in args.ids if i not in by_id]
    if unknown:
        parser.error(f"unknown id {unknown[0]!r}; see `python tools/doc_commands.py list`")
    return max(run_entry(by_id[i], args.note) for i in args.ids)


if __name__ == "__main__":
    sys.exit(main())
