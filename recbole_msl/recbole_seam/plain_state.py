"""RecBole models' ``other_parameter`` values (numpy arrays, scipy sparse matrices) as plain tensors and back, so
their checkpoints load with ``torch.load(weights_only=True)``: ItemKNN keeps a scipy similarity matrix, EASE numpy
arrays, and a pickle of either is refused by a weights-only load."""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp
import torch

from ..errors import ConfigError

_KIND = "__recbole_msl_kind__"


def to_plain(value, name: str = "value"):
    """``value`` with every numpy array and scipy sparse matrix replaced by a tagged dict of tensors."""
    if value is None or isinstance(value, (bool, int, float, str, torch.Tensor)):
        return value
    if isinstance(value, dict):
        return {k: to_plain(v, f"{name}.{k}") for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return type(value)(to_plain(v, f"{name}[{i}]") for i, v in enumerate(value))
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        if value.dtype == object:
            raise ConfigError(f"{name} is a numpy array of Python objects, which a weights-only checkpoint cannot "
                              f"hold; keep numeric arrays in other_parameter")
        return {_KIND: "numpy", "array": torch.from_numpy(np.ascontiguousarray(value))}
    if sp.issparse(value):
        coo = value.tocoo()
        return {_KIND: "sparse", "format": value.format, "shape": list(coo.shape),
                "data": torch.from_numpy(np.ascontiguousarray(coo.data)),
                "row": torch.from_numpy(coo.row.astype(np.int64)), "col": torch.from_numpy(coo.col.astype(np.int64))}
    raise ConfigError(f"{name} is a {type(value).__name__}, which a weights-only checkpoint cannot hold; keep "
                      f"tensors, numpy arrays or scipy sparse matrices in other_parameter")


def from_plain(value):
    """The inverse of :func:`to_plain`."""
    if isinstance(value, dict):
        kind = value.get(_KIND)
        if kind == "numpy":
            return value["array"].numpy()
        if kind == "sparse":
            coo = sp.coo_matrix((value["data"].numpy(), (value["row"].numpy(), value["col"].numpy())),
                                shape=tuple(value["shape"]))
            return coo.asformat(value["format"])
        return {k: from_plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return type(value)(from_plain(v) for v in value)
    return value
