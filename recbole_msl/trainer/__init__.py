"""RecBole's trainer contract: LLMMSL's trainer and what every trainer run through the plugin records.

``LLMMSLTrainer`` is imported on first use: it pulls in transformers, which importing the package
(and a RecBole model's run) does not need.
"""

__all__ = ["LLMMSLTrainer"]


def __getattr__(name):
    if name == "LLMMSLTrainer":
        from .llmmsl_trainer import LLMMSLTrainer

        return LLMMSLTrainer
    raise AttributeError(name)
