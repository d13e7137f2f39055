"""Pickled weights (`.pdparams`) read without running them: one allow-list unpickler.

`paddle.load` and PaddleNLP's `from_pretrained` unpickle a `.pdparams` with Python's pickle, which
runs whatever callables the file names. This reader rebuilds only what `paddle.save` and
PaddleNLP's `save_pretrained` write (found by reading real Paddle 2.6 and 3.x files, protocols 2-4):
a dict of numpy arrays (numpy's `_reconstruct`, `ndarray`, `dtype`; `_codecs.encode` in protocol 2),
tensors saved as `(name, array)` tuples (`builtins.tuple`) or as `eval('data', {'data': array})`
(Paddle's DenseTensor record, rebuilt here without calling eval), `collections.OrderedDict`, and
plain containers. Every other global is refused before it is imported, every opcode that could
name code another way (extensions, persistent ids, INST/OBJ/NEWOBJ) is refused, and every
constructor it allows checks its arguments: numeric dtypes only, array bytes exactly the size the
shape says, memo indices in order. Nothing in the file can make the reader allocate far beyond
the file's size.
"""
from __future__ import annotations

import io
import math
import pickle
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from serving_core.errors import UserError

# Keys paddle.save writes beside the tensors: a name map PaddleNLP ignores, and the slices of
# arrays over 1 GiB that protocols 2 and 3 cannot hold in one piece.
_NAME_MAP_KEY = "StructuredToParameterName@@"
_SPLIT_KEY = "UnpackBigParamInfor@@"
_DTYPES = frozenset({"b1", "i1", "i2", "i4", "i8", "u1", "u2", "u4", "u8", "f2", "f4", "f8", "c8", "c16"})
_MAX_DIMS = 32
HOW_TO_FIX = ("re-save it with PaddleNLP's save_pretrained(..., safe_serialization=True) (model.safetensors), "
              "or convert it where you trust it")


class RefusedPickle(pickle.UnpicklingError):
    """The file asks for something a weights file does not hold."""


class _Ndarray:
    """Stands for `numpy.ndarray` as `_reconstruct`'s first argument; cannot be called."""

    __slots__ = ()


def _checked_dtype(spec, align=False, copy=True) -> np.dtype:
    if not isinstance(spec, str) or spec not in _DTYPES or not isinstance(align, bool) or not isinstance(copy, bool):
        raise RefusedPickle(f"numpy.dtype({spec!r}): only numeric dtypes are read")
    return np.dtype(spec)


def _is_plain_dtype(dtype) -> bool:
    return (isinstance(dtype, np.dtype) and dtype.kind in "biufc" and dtype.fields is None
            and dtype.subdtype is None and not dtype.hasobject)


def _allowed_globals() -> dict[tuple[str, str], object]:
    """Fresh callables for one load (so nothing a file does to them outlives it)."""
    marker = _Ndarray()

    def reconstruct(subtype, shape, code):
        if subtype is not marker or tuple(shape) != (0,) or code not in (b"b", "b"):
            raise RefusedPickle("numpy _reconstruct with arguments numpy never writes")
        return np.ndarray((0,), np.int8)

    def encode(text, encoding):
        if not isinstance(text, str) or encoding not in ("latin1", "latin-1"):
            raise RefusedPickle("_codecs.encode with arguments pickle never writes")
        return text.encode("latin1")

    def as_tuple(items):
        if not isinstance(items, (list, tuple)):
            raise RefusedPickle("builtins.tuple of something not a sequence")
        return tuple(items)

    def dense_tensor(expression, namespace):  # Paddle's DenseTensor record: eval('data', {'data': array})
        if expression != "data" or not isinstance(namespace, dict) or set(namespace) != {"data"} \
                or not isinstance(namespace["data"], np.ndarray):
            raise RefusedPickle("builtins.eval with anything but Paddle's tensor record")
        return namespace["data"]

    def ordered_dict(*args):
        if len(args) > 1 or (args and not isinstance(args[0], (list, tuple, dict))):
            raise RefusedPickle("collections.OrderedDict with arguments pickle never writes")
        return OrderedDict(*args)

    allowed: dict[tuple[str, str], object] = {("numpy", "ndarray"): marker, ("numpy", "dtype"): _checked_dtype,
                                              ("_codecs", "encode"): encode, ("builtins", "tuple"): as_tuple,
                                              ("builtins", "eval"): dense_tensor,
                                              ("collections", "OrderedDict"): ordered_dict}
    for module in ("numpy.core.multiarray", "numpy._core.multiarray"):
        allowed[(module, "_reconstruct")] = reconstruct
    # Python 2 wrote the builtins module as __builtin__.
    allowed.update({("__builtin__", name): value for (module, name), value in list(allowed.items())
                    if module == "builtins"})
    return allowed


# Opcodes that reach code other than through GLOBAL / STACK_GLOBAL, or that weights never need.
_REFUSED_OPCODES = ("PERSID", "BINPERSID", "EXT1", "EXT2", "EXT4", "INST", "OBJ", "NEWOBJ", "NEWOBJ_EX",
                    "NEXT_BUFFER", "READONLY_BUFFER")


def _dispatch_without_refused() -> dict:
    def refuse(opcode: str):
        def refused(self):
            raise RefusedPickle(f"the {opcode} opcode (weights files never use it)")
        return refused

    table = dict(pickle._Unpickler.dispatch)
    table.update({getattr(pickle, name)[0]: refuse(name) for name in _REFUSED_OPCODES})
    return table


class _WeightsUnpickler(pickle._Unpickler):
    """Python's own unpickler (pure Python, so each opcode can be checked), with the allow-list."""

    dispatch = _dispatch_without_refused()

    def __init__(self, data: bytes):
        super().__init__(io.BytesIO(data))
        self._allowed = _allowed_globals()
        self.globals_named: list[str] = []

    def find_class(self, module, name):
        self.globals_named.append(f"{module}.{name}")
        try:
            return self._allowed[(module, name)]
        except (KeyError, TypeError):
            raise RefusedPickle(f"it names {module}.{name}, which a weights file never needs") from None

    def _memo_index(self, index: int) -> int:
        if index != len(self.memo) and index not in self.memo:
            raise RefusedPickle(f"memo index {index} out of order")
        return index

    def load_put(self):
        index = self.readline()[:-1].decode("ascii")
        if not index.isdigit():
            raise RefusedPickle("a PUT whose index is not a number")
        self.memo[self._memo_index(int(index))] = self.stack[-1]
    dispatch[pickle.PUT[0]] = load_put

    def load_binput(self):
        self.memo[self._memo_index(self.read(1)[0])] = self.stack[-1]
    dispatch[pickle.BINPUT[0]] = load_binput

    def load_long_binput(self):
        self.memo[self._memo_index(int.from_bytes(self.read(4), "little"))] = self.stack[-1]
    dispatch[pickle.LONG_BINPUT[0]] = load_long_binput

    def load_reduce(self):
        args = self.stack.pop()
        call = self.stack[-1]
        if not isinstance(args, tuple):
            raise RefusedPickle("a REDUCE whose arguments are not a tuple")
        try:
            self.stack[-1] = call(*args)
        except TypeError:  # only allow-listed callables are reachable: the arguments are not theirs
            name = next((f"{m}.{n}" for (m, n), value in self._allowed.items() if value is call), "a call")
            raise RefusedPickle(f"{name} with arguments a weights file never holds") from None
    dispatch[pickle.REDUCE[0]] = load_reduce

    def load_build(self):
        state = self.stack.pop()
        target = self.stack[-1]
        if isinstance(target, np.ndarray):
            _set_array_state(target, state)
        elif isinstance(target, np.dtype):
            _check_dtype_state(target, state)
            target.__setstate__(state)
        else:
            raise RefusedPickle(f"BUILD on a {type(target).__name__} (weights files set the state of arrays and "
                                "dtypes only)")
    dispatch[pickle.BUILD[0]] = load_build


def _check_dtype_state(dtype: np.dtype, state) -> None:
    """A dtype's state as numpy itself writes it for that numeric dtype, in some byte order."""
    canonical = [d.__reduce__()[2] for d in (dtype, dtype.newbyteorder("<"), dtype.newbyteorder(">"),
                                             dtype.newbyteorder("|"))]
    if not _is_plain_dtype(dtype) or state not in canonical:
        raise RefusedPickle("a dtype state numpy never writes for a numeric dtype")


def _set_array_state(array: np.ndarray, state) -> None:
    """numpy's ndarray state (version, shape, dtype, fortran order, raw bytes), checked first."""
    if not (isinstance(state, tuple) and len(state) == 5 and state[0] == 1):
        raise RefusedPickle("an array state numpy never writes")
    _, shape, dtype, fortran, raw = state
    if not (isinstance(shape, tuple) and len(shape) <= _MAX_DIMS
            and all(isinstance(n, int) and not isinstance(n, bool) and n >= 0 for n in shape)):
        raise RefusedPickle(f"an array shape {shape!r}")
    if not _is_plain_dtype(dtype) or not isinstance(fortran, bool) or not isinstance(raw, bytes):
        raise RefusedPickle("an array of a dtype or data a weights file does not hold")
    if math.prod(shape) * dtype.itemsize != len(raw):
        raise RefusedPickle(f"an array of shape {shape} whose data is {len(raw)} bytes")
    array.__setstate__(state)


def _unpickle(path: Path, unpickler: _WeightsUnpickler):
    try:
        return unpickler.load()
    except RefusedPickle as exc:
        raise UserError(f"refused without running it: {exc}. A .pdparams is a Python pickle, which can run code "
                        f"when it is loaded; {HOW_TO_FIX}", str(path)) from None
    except Exception as exc:  # noqa: BLE001 - a malformed file, whatever the reader tripped on
        raise UserError(f"is not a readable Paddle weights file ({type(exc).__name__}: {exc}); copy it again or "
                        f"{HOW_TO_FIX}", str(path)) from None


def _state_dict(loaded, path: Path) -> dict[str, np.ndarray]:
    """name -> array from what paddle.save wrote (arrays, or (name, array) tensor records), the slices
    of split arrays joined."""
    if not isinstance(loaded, dict):
        raise UserError(f"holds a {type(loaded).__name__}, not a state dict of tensors; {HOW_TO_FIX}", str(path))
    split = loaded.get(_SPLIT_KEY) or {}
    weights: dict[str, np.ndarray] = {}
    for name, value in loaded.items():
        if name in (_NAME_MAP_KEY, _SPLIT_KEY):
            continue
        if isinstance(value, tuple) and len(value) == 2 and isinstance(value[0], str):
            value = value[1]
        if not isinstance(name, str) or not isinstance(value, np.ndarray):
            raise UserError(f"entry {name!r} is a {type(value).__name__}, not a tensor; a PaddleNLP checkpoint's "
                            f".pdparams holds tensors only", str(path))
        weights[name] = value
    if not isinstance(split, dict):
        raise UserError(f"{_SPLIT_KEY} is not paddle.save's record of split arrays", str(path))
    for name, info in split.items():
        try:
            parts = [weights.pop(part) for part in info["slices"]]
            weights[name] = np.concatenate(parts).reshape(tuple(info["OriginShape"]))
        except (KeyError, TypeError, ValueError):
            raise UserError(f"the slices of {name!r} do not make its shape", str(path)) from None
    return weights


def load_pickled_weights(path: Path) -> dict[str, np.ndarray]:
    """The tensors of a `.pdparams` by name, read by the allow-list unpickler (exit 2 naming the
    file and what it asked for when it holds anything else)."""
    return _state_dict(_unpickle(path, _WeightsUnpickler(Path(path).read_bytes())), Path(path))


def safetensors_copy(config_files: list[Path], weight_files: list[Path], target: Path, rename=None) -> Path:
    """`target` made a checkpoint PaddleNLP loads without unpickling: the config files and one
    `model.safetensors` holding the tensors of `weight_files` (.pdparams, read by the allow-list;
    or .safetensors). `rename(name)`: the name a tensor is saved under, None to leave it out."""
    from safetensors.numpy import save_file

    from builder.source.user_files import safetensors_tensors

    weights: dict[str, np.ndarray] = {}
    for path in weight_files:
        tensors = safetensors_tensors(path) if path.suffix == ".safetensors" else load_pickled_weights(path).items()
        for name, value in tensors:
            name = rename(name) if rename else name
            if name is not None:
                weights[name] = value
    target.mkdir(parents=True, exist_ok=True)
    for config_file in config_files:
        (target / config_file.name).write_bytes(config_file.read_bytes())
    save_file({name: np.ascontiguousarray(value) for name, value in weights.items()},
              str(target / "model.safetensors"), metadata={"format": "np"})
    return target


@dataclass(frozen=True)
class PickleCheck:
    """What `builder inspect` says of one pickle file: the globals it names and whether it passes."""

    file: str
    globals_named: tuple[str, ...]
    refused: str | None  # the reason, when it does not pass

    def to_json(self) -> dict:
        return {"file": self.file, "pickle": True, "passes_allow_list": self.refused is None,
                "globals": sorted(set(self.globals_named)), **({"refused": self.refused} if self.refused else {})}


def check_pickle(path: Path) -> PickleCheck:
    """Read the file with the allow-list unpickler (which runs nothing outside the list) and say
    whether a build would accept it."""
    unpickler = _WeightsUnpickler(Path(path).read_bytes())
    try:
        _state_dict(_unpickle(path, unpickler), Path(path))
        return PickleCheck(str(path), tuple(unpickler.globals_named), None)
    except UserError as exc:
        return PickleCheck(str(path), tuple(unpickler.globals_named), exc.message)


def is_pickle(path: Path) -> bool:
    """Whether the file starts as a pickle of protocol 2-5 does (what paddle.save writes)."""
    with open(path, "rb") as f:
        head = f.read(2)
    return len(head) == 2 and head[0] == pickle.PROTO[0] and 2 <= head[1] <= 5
