"""Bounded readers for the files of a model directory the builder reads itself.

A model directory may come from anywhere: each reader checks the file's size before reading it,
what it declares (a safetensors header's length, its tensors' offsets) against the file, and
the types of the values it uses, and refuses with a UserError naming the file (exit 2), never a
traceback, a hang or memory far beyond the file's size.
"""
from __future__ import annotations

import json
import math
import struct
from pathlib import Path

from serving_core.errors import UserError

MiB = 2**20
TEXT_LIMIT = 64 * MiB  # config, tokenizer, label and yaml files: real ones are kilobytes to a few MiB
SAFETENSORS_HEADER_LIMIT = 100 * MiB  # what the safetensors format itself allows
_SAFETENSORS_ITEMSIZE = {"BOOL": 1, "U8": 1, "I8": 1, "F8_E4M3": 1, "F8_E5M2": 1, "I16": 2, "U16": 2, "F16": 2,
                         "BF16": 2, "I32": 4, "U32": 4, "F32": 4, "I64": 8, "U64": 8, "F64": 8}


def checked_size(path: Path, limit: int, what: str) -> int:
    """The file's size, refused past `limit` bytes."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"{what} not found (or not a file)", str(path))
    size = path.stat().st_size
    if size > limit:
        raise UserError(f"is {size / MiB:.0f} MiB; a {what} is never over {limit / MiB:.0f} MiB: is it the right "
                        "file?", str(path))
    return size


def read_text(path: Path, what: str, limit: int = TEXT_LIMIT, bom: bool = True) -> str:
    """UTF-8 text (a BOM dropped unless `bom` is False), size-checked first."""
    checked_size(path, limit, what)
    try:
        return Path(path).read_bytes().decode("utf-8-sig" if bom else "utf-8")
    except UnicodeDecodeError as exc:
        raise UserError(f"is not UTF-8 text ({exc.reason} at byte {exc.start}); save the {what} as UTF-8",
                        str(path)) from None


def _parsed(path: Path, what: str, kind: str, parse, errors: tuple):
    text = read_text(path, what)
    try:
        return parse(text)
    except (*errors, RecursionError, ValueError) as exc:  # deep nesting included
        raise UserError(f"invalid {kind} ({type(exc).__name__}: {str(exc)[:200]})", str(path)) from None


def read_json(path: Path, what: str = "JSON file") -> object:
    """A JSON document, size-checked, its parse errors refused by name."""
    return _parsed(path, what, "JSON", json.loads, ())


def read_yaml(path: Path, what: str = "yaml file") -> object:
    """A yaml document through yaml.safe_load (plain data only), size-checked."""
    import yaml

    return _parsed(path, what, "yaml", yaml.safe_load, (yaml.YAMLError,))


def safetensors_shapes(path: Path) -> dict[str, tuple[int, ...]]:
    """Each tensor's shape from a safetensors header, checked against the file: the header's
    length, every dtype known, every tensor's bytes the size its shape says and inside the file."""
    size = Path(path).stat().st_size
    with open(path, "rb") as f:
        head = f.read(8)
        if len(head) < 8:
            raise UserError("is too short to be a safetensors file", str(path))
        (length,) = struct.unpack("<Q", head)
        if length > min(SAFETENSORS_HEADER_LIMIT, size - 8):
            raise UserError(f"its safetensors header claims {length} bytes; the file has {size}: the file is "
                            "truncated or not safetensors", str(path))
        header_bytes = f.read(length)
    try:
        header = json.loads(header_bytes)
    except (ValueError, RecursionError) as exc:
        raise UserError(f"its safetensors header is not JSON ({type(exc).__name__})", str(path)) from None
    if not isinstance(header, dict):
        raise UserError("its safetensors header is not a JSON object", str(path))
    data_size = size - 8 - length
    shapes: dict[str, tuple[int, ...]] = {}
    for name, entry in header.items():
        if name == "__metadata__":
            continue
        try:
            dtype, shape, (start, end) = entry["dtype"], entry["shape"], entry["data_offsets"]
            ok = (dtype in _SAFETENSORS_ITEMSIZE and all(_is_count(n) for n in (*shape, start, end))
                  and start <= end <= data_size and (end - start) == math.prod(shape) * _SAFETENSORS_ITEMSIZE[dtype])
        except (KeyError, TypeError, ValueError):
            ok = False
        if not ok:
            raise UserError(f"tensor {name!r}: its dtype, shape or offsets do not fit the file ({data_size} bytes "
                            "of data)", str(path))
        shapes[name] = tuple(shape)
    return shapes


def safetensors_tensors(path: Path):
    """(name, array) for each tensor of a safetensors file whose header passed `safetensors_shapes`,
    one at a time; tensors of a dtype numpy has not (bfloat16, float8) are passed over."""
    from safetensors import safe_open

    with safe_open(str(path), framework="np") as f:
        for name in f.keys():
            try:
                yield name, f.get_tensor(name)
            except (TypeError, ValueError):
                continue


def _is_count(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


def checked_int(config: dict, key: str, where: Path, low: int = 0, high: int = 2**31 - 1) -> int | None:
    """config[key] as an int in [low, high] (None when absent), refused by name otherwise."""
    value = config.get(key)
    if value is None:
        return None
    if not isinstance(value, int) or isinstance(value, bool) or not low <= value <= high:
        raise UserError(f"{key} is {str(value)[:80]!r}; it must be a whole number from {low} to {high}", str(where))
    return value


# Paddle's VarType.Type values -> bytes an element takes (framework.proto).
_PADDLE_ITEMSIZE = {0: 1, 1: 2, 2: 4, 3: 8, 4: 2, 5: 4, 6: 8, 20: 1, 21: 1, 22: 2, 23: 8, 24: 16, 32: 1, 33: 1}
_MAX_DESC = 4096  # a TensorDesc is a dtype and a few dims: tens of bytes


def check_params_stream(path: Path) -> int:
    """Walk a `.pdiparams` (Paddle's save_combine stream: per tensor a version, its LoD, a
    TensorDesc, the raw data) without reading the data, and refuse it unless every declared length
    fits and the tensors end exactly where the file does. Returns the number of tensors."""
    from google.protobuf.message import DecodeError
    from paddle.base.proto import framework_pb2

    size = Path(path).stat().st_size

    def refuse(why: str) -> UserError:
        return UserError(f"is not a Paddle parameters file Paddle could read ({why}); export the program again "
                         "(paddle.jit.save or paddle.static.save_inference_model)", str(path))

    count = 0
    with open(path, "rb") as f:
        while f.tell() < size:
            head = f.read(12)
            if len(head) < 12:
                raise refuse("it ends inside a tensor's header")
            version, lod_level = struct.unpack("<IQ", head)
            if version != 0 or lod_level > 8:
                raise refuse(f"tensor {count} has version {version} and {lod_level} LoD levels")
            for _ in range(lod_level):
                (lod_bytes,) = struct.unpack("<Q", f.read(8).ljust(8, b"\xff"))
                if lod_bytes > size - f.tell():
                    raise refuse(f"tensor {count}'s LoD claims {lod_bytes} bytes")
                f.seek(lod_bytes, 1)
            head = f.read(8)
            if len(head) < 8:
                raise refuse("it ends inside a tensor's header")
            tensor_version, desc_size = struct.unpack("<Ii", head)
            if tensor_version != 0 or not 0 <= desc_size <= min(_MAX_DESC, size - f.tell()):
                raise refuse(f"tensor {count}'s description claims {desc_size} bytes")
            desc = framework_pb2.VarType.TensorDesc()
            try:
                desc.ParseFromString(f.read(desc_size))
            except DecodeError:
                raise refuse(f"tensor {count}'s description is not a TensorDesc") from None
            dims = list(desc.dims)
            if desc.data_type not in _PADDLE_ITEMSIZE or len(dims) > 32 or any(d < 0 for d in dims):
                raise refuse(f"tensor {count} has dtype {desc.data_type} and dims {dims[:8]}")
            data_bytes = math.prod(dims) * _PADDLE_ITEMSIZE[desc.data_type]
            if data_bytes > size - f.tell():
                raise refuse(f"tensor {count} of dims {dims} needs {data_bytes} bytes; {size - f.tell()} remain")
            f.seek(data_bytes, 1)
            count += 1
    return count
