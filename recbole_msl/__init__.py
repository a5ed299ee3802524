"""recbole-msl: tune an LLM as a sequential recommender with the Masked Softmax Loss, inside RecBole."""

from .recbole_seam.compat import install_array_augmentation, install_numpy_aliases, quiet_recbole_warnings

install_numpy_aliases()
quiet_recbole_warnings()  # before any RecBole module runs numpy-1 code
install_array_augmentation()  # RecBole's sequential data sets, built with array operations (same tensors)

from .errors import ConfigError
from .quick_start import Recommender, recommend, run
from .recbole_seam.config import Config

__all__ = ["Config", "ConfigError", "Recommender", "recommend", "run"]
__version__ = "0.1.0"
