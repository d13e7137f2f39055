"""Tensor specifications and dtype names shared by the program reader and configs."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

# numpy dtype name -> Triton data type name (model_config.proto `DataType` without TYPE_).
_NUMPY_TO_TRITON = {
    "int32": "INT32",
    "int64": "INT64",
    "float32": "FP32",
    "float16": "FP16",
    "bool": "BOOL",
    "object": "STRING",
    "bytes": "STRING",
    "uint8": "UINT8",
    "int8": "INT8",
}


@dataclass(frozen=True)
class TensorSpec:
    """A named tensor: numpy dtype name and shape with -1 for dynamic axes (batch first)."""

    name: str
    dtype: str
    shape: tuple[int, ...]

    @property
    def triton_type(self) -> str:
        """The model_config.proto DataType name, e.g. ``TYPE_INT64``."""
        return "TYPE_" + _NUMPY_TO_TRITON[self.dtype]

    @property
    def numpy_dtype(self) -> np.dtype:
        return np.dtype(self.dtype)

