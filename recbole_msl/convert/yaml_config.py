"""The YAML written next to the atomic files: everything RecBole and LLMMSL need to run on them.

Only the interaction columns are loaded through RecBole (``load_col``); LLMMSL reads the titles from
the ``.item`` file itself, verbatim, so RecBole never splits or re-maps them.
"""

from __future__ import annotations

import json
import shlex

from .domain import Domain

FALLBACK = "Item {item_id}"


def _quoted(text: str) -> str:
    """A YAML double-quoted scalar (JSON strings are valid YAML)."""
    return json.dumps(text, ensure_ascii=False)


def _prompt_lines(domain: Domain, keep_untitled: bool) -> list[str]:
    lines = ["item_text_field: title            # the .item column LLMMSL puts in prompts",
             "restore_title_articles: False"]
    if keep_untitled:
        lines.append(f"item_text_fallback: {_quoted(FALLBACK)}   # items kept without a title (--keep_untitled)")
    return lines + [f"prompt_instruction: {_quoted(domain.instruction())}",
                    f"prompt_input: {_quoted(domain.input())}"]


def interactions_yaml(name: str, origin: str, command: str, domain: Domain, keep_untitled: bool) -> str:
    """Leave-one-out by time (valid: each user's second-to-last item, test: the last), full ranking."""
    lines = [f"# {name}: {origin}, converted by recbole_msl.convert.",
             f"#   {command}",
             "load_col:",
             "  inter: [user_id, item_id, timestamp]   # the .item file is read by LLMMSL, not RecBole",
             "eval_args:",
             "  split: {'LS': 'valid_and_test'}",
             "  order: TO",
             "  group_by: user",
             "  mode: full",
             "MAX_ITEM_LIST_LENGTH: 10               # history titles in the prompt (most recent kept)",
             *_prompt_lines(domain, keep_untitled)]
    return "\n".join(lines) + "\n"


def benchmark_yaml(name: str, origin: str, command: str, domain: Domain, keep_untitled: bool,
                   max_history: int) -> str:
    """The split as given: <name>.train/.valid/.test.inter, each row a history and its target."""
    lines = [f"# {name}: {origin}, converted by recbole_msl.convert.",
             f"#   {command}",
             "benchmark_filename: [train, valid, test]",
             "alias_of_item_id: [item_id_list]",
             "load_col:",
             "  inter: [user_id, item_id_list, item_id, timestamp]",
             "eval_args:",
             "  order: TO",
             "  group_by: ~",
             "  mode: full",
             f"MAX_ITEM_LIST_LENGTH: {max_history}               # the longest history in the files",
             *_prompt_lines(domain, keep_untitled)]
    return "\n".join(lines) + "\n"


def train_command(out_dir: str, name: str, yaml_path: str, model: str = "LLMMSL") -> str:
    """The command that trains ``model`` on the converted files."""
    return (f"recbole-msl train --model={model} --dataset={name} --data_path={shlex.quote(out_dir)} "
            f"--config_files={shlex.quote(yaml_path)}")
