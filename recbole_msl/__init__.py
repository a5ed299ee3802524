"""recbole-msl: tune an LLM as a sequential recommender with the Masked Softmax Loss, inside RecBole."""

from .compat import install_numpy_aliases, quiet_recbole_pandas_warnings

install_numpy_aliases()
quiet_recbole_pandas_warnings()  # before any RecBole module runs numpy-1 code

from .config import Config  # noqa: E402
from .errors import ConfigError  # noqa: E402
from .quick_start import Recommender, recommend, run  # noqa: E402

__all__ = ["Config", "ConfigError", "Recommender", "recommend", "run"]
__version__ = "0.1.0"
