from .llmmsl_trainer import LLMMSLTrainer

__all__ = ["LLMMSLTrainer"]
