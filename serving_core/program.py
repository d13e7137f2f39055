"""Read the input/output signature of an exported model without running it.

Four formats: Paddle 3 PIR (`*.json` + `*.pdiparams`), legacy Paddle
(`*.pdmodel` + `*.pdiparams`), ONNX, and OpenVINO IR (`*.xml` + `*.bin`), which only builds
write (NNCF's INT8 for OpenVINO); a model directory is searched for the first three. Names,
dtypes and shapes always come from the program itself, never from a naming convention such as
``fetch_name_0``.
"""
from __future__ import annotations

import enum
import json
from dataclasses import dataclass
from pathlib import Path

from .errors import UserError
from .tensors import TensorSpec

# PIR type tags ("0.t_i64") -> numpy dtype names.
_PIR_DTYPES = {
    "t_i64": "int64", "t_i32": "int32", "t_f32": "float32", "t_f16": "float16",
    "t_bf16": "bfloat16", "t_bool": "bool", "t_i8": "int8", "t_ui8": "uint8",
}
# framework.proto VarType.Type values -> numpy dtype names.
_LEGACY_DTYPES = {0: "bool", 1: "int16", 2: "int32", 3: "int64", 4: "float16", 5: "float32",
                  20: "uint8", 21: "int8", 22: "bfloat16"}
# onnx TensorProto.DataType values -> numpy dtype names.
_ONNX_DTYPES = {1: "float32", 6: "int32", 7: "int64", 9: "bool", 10: "float16", 3: "int8", 2: "uint8"}


class ProgramFormat(str, enum.Enum):
    PIR = "pir"
    LEGACY = "legacy"
    ONNX = "onnx"
    OPENVINO_IR = "openvino_ir"


@dataclass(frozen=True)
class ProgramFiles:
    """The files of one exported program."""

    format: ProgramFormat
    model_file: Path
    params_file: Path | None  # None for ONNX; the .bin of OpenVINO IR


@dataclass(frozen=True)
class ProgramSignature:
    inputs: tuple[TensorSpec, ...]
    outputs: tuple[TensorSpec, ...]


def find_programs(directory: Path) -> list[ProgramFiles]:
    """Every exported program in `directory`: a `.json`/`.pdmodel` with its `.pdiparams`, or `.onnx`."""
    found = []
    for params in sorted(Path(directory).glob("*.pdiparams")):
        for suffix, fmt in ((".json", ProgramFormat.PIR), (".pdmodel", ProgramFormat.LEGACY)):
            model = params.with_suffix(suffix)
            if model.is_file():
                found.append(ProgramFiles(fmt, model, params))
                break
    found += [ProgramFiles(ProgramFormat.ONNX, path, None) for path in sorted(Path(directory).glob("*.onnx"))]
    return found


def find_program(directory: Path, chosen: str | None = None) -> ProgramFiles | None:
    """The one exported program in `directory`, or the one whose model file is named `chosen`;
    several without a choice are refused, listed (taking the first silently served the wrong one)."""
    from .errors import UserError

    programs = find_programs(directory)
    if chosen is not None:
        matches = [p for p in programs if chosen in (p.model_file.name, p.model_file.stem)]
        if not matches:
            names = ", ".join(p.model_file.name for p in programs) or "none"
            raise UserError(f"no program {chosen!r} here (found: {names})", str(directory))
        return matches[0]
    if len(programs) > 1:
        raise UserError(f"holds {len(programs)} programs ({', '.join(p.model_file.name for p in programs)}); "
                        "choose one with --program NAME", str(directory))
    return programs[0] if programs else None


def read_signature(files: ProgramFiles) -> ProgramSignature:
    """Inputs and outputs of the program, in the program's order."""
    readers = {ProgramFormat.PIR: _read_pir, ProgramFormat.LEGACY: _read_legacy,
               ProgramFormat.ONNX: _read_onnx, ProgramFormat.OPENVINO_IR: _read_openvino_ir}
    try:
        signature = readers[files.format](files.model_file)
    except UserError:
        raise
    except Exception as exc:  # corrupt or foreign file: say which and what to do
        raise UserError(f"cannot read the program ({type(exc).__name__}: {exc}); "
                        "re-export it with paddle.jit.save", str(files.model_file)) from exc
    if not signature.inputs or not signature.outputs:
        raise UserError("the program has no feed or no fetch variables; "
                        "is this an inference export (paddle.jit.save)?", str(files.model_file))
    return signature


def _pir_ops(program: dict):
    for region in program.get("regions", []):
        for block in region.get("blocks", []):
            yield from block.get("ops", [])


def _pir_attr(op: dict, name: str):
    for attr in op.get("A", []):
        if isinstance(attr, dict) and attr.get("N") == name:
            return attr["AT"]["D"]
    return None


def _pir_tensor_type(op: dict) -> tuple[str, tuple[int, ...]]:
    out = op["O"][0] if isinstance(op["O"], list) else op["O"]
    dtype_tag, shape = out["TT"]["D"][0]["#"], out["TT"]["D"][1]
    return _PIR_DTYPES[dtype_tag.split(".", 1)[1]], tuple(int(d) for d in shape)


def _read_pir(path: Path) -> ProgramSignature:
    with open(path, encoding="utf-8") as f:
        data = json.load(f)
    if "program" not in data:
        raise UserError("this .json is not a Paddle PIR program (no 'program' key)", str(path))
    inputs, outputs = [], []
    for op in _pir_ops(data["program"]):
        kind = op.get("#", "").rsplit(".", 1)[-1]
        if kind == "data":
            dtype, shape = _pir_tensor_type(op)
            inputs.append(TensorSpec(_pir_attr(op, "name"), dtype, shape))
        elif kind == "fetch":
            dtype, shape = _pir_tensor_type(op)
            outputs.append(TensorSpec(_pir_attr(op, "name"), dtype, shape))
    return ProgramSignature(tuple(inputs), tuple(outputs))


def legacy_program(path: Path):
    """A Paddle 2.x `.pdmodel` (a ProgramDesc protobuf), refused by name when it does not parse."""
    from google.protobuf.message import DecodeError
    from paddle.base.proto import framework_pb2  # lazy: only the builder reads legacy files

    program = framework_pb2.ProgramDesc()
    try:
        program.ParseFromString(Path(path).read_bytes())
    except DecodeError:
        raise UserError("is not a Paddle program (the ProgramDesc does not parse); export it again",
                        str(path)) from None
    if not program.blocks:
        raise UserError("is a Paddle program with no blocks; export it again", str(path))
    return program


def _read_legacy(path: Path) -> ProgramSignature:
    program = legacy_program(path)
    block = program.blocks[0]
    variables = {v.name: v for v in block.vars}

    def spec(name: str) -> TensorSpec:
        # Paddle 3 renamed VarType.lod_tensor to dense_tensor (same field number): a Paddle 2.x
        # file reads the same under either name, whichever this Paddle's proto has.
        var_type = variables[name].type
        tensor = getattr(var_type, "dense_tensor", None) or var_type.lod_tensor
        return TensorSpec(name, _LEGACY_DTYPES[tensor.tensor.data_type], tuple(tensor.tensor.dims))

    feeds, fetches = {}, {}
    for op in block.ops:
        col = next((a.i for a in op.attrs if a.name == "col"), 0)
        if op.type == "feed":
            feeds[col] = spec(op.outputs[0].arguments[0])
        elif op.type == "fetch":
            fetches[col] = spec(op.inputs[0].arguments[0])
    return ProgramSignature(tuple(feeds[k] for k in sorted(feeds)),
                            tuple(fetches[k] for k in sorted(fetches)))


def check_external_data(model, path: Path) -> None:
    """Every tensor an ONNX model keeps in external files names a file beside it, inside the model's
    directory, and a range within that file (ONNX Runtime would otherwise read any path it names)."""
    directory = Path(path).resolve().parent
    for tensor in model.graph.initializer:
        if tensor.data_location != tensor.EXTERNAL:
            continue
        entry = {item.key: item.value for item in tensor.external_data}
        location = entry.get("location", "")
        target = (directory / location).resolve()
        if not location or Path(location).is_absolute() or directory not in target.parents or not target.is_file():
            raise UserError(f"tensor {tensor.name!r} keeps its data in {location!r}, which is not a file inside the "
                            "model's directory", str(path))
        try:
            offset, length = int(entry.get("offset", 0)), int(entry.get("length", 0))
        except ValueError:
            offset = length = -1
        if offset < 0 or length < 0 or offset + length > target.stat().st_size:
            raise UserError(f"tensor {tensor.name!r}: its external data range does not fit {location!r}", str(path))


def _read_onnx(path: Path) -> ProgramSignature:
    import onnx

    model = onnx.load(str(path), load_external_data=False)
    check_external_data(model, path)
    initializers = {i.name for i in model.graph.initializer}

    def spec(value) -> TensorSpec:
        tensor_type = value.type.tensor_type
        shape = tuple(d.dim_value if d.HasField("dim_value") else -1 for d in tensor_type.shape.dim)
        return TensorSpec(value.name, _ONNX_DTYPES[tensor_type.elem_type], shape)

    return ProgramSignature(
        tuple(spec(v) for v in model.graph.input if v.name not in initializers),
        tuple(spec(v) for v in model.graph.output))


_OPENVINO_DTYPES = {"f32": "float32", "i64": "int64", "i32": "int32", "f16": "float16", "boolean": "bool",
                    "i8": "int8", "u8": "uint8", "bf16": "bfloat16"}


def _openvino_ir(path: Path):
    """The IR's graph as OpenVINO reads it (its weights are mapped, not copied)."""
    import openvino

    return openvino.Core().read_model(str(path), str(Path(path).with_suffix(".bin")))


def _read_openvino_ir(path: Path) -> ProgramSignature:
    model = _openvino_ir(path)

    def spec(port) -> TensorSpec:
        shape = tuple(d.get_length() if d.is_static else -1 for d in port.get_partial_shape())
        return TensorSpec(port.get_any_name(), _OPENVINO_DTYPES[port.get_element_type().get_type_name()], shape)

    return ProgramSignature(tuple(spec(p) for p in model.inputs), tuple(spec(p) for p in model.outputs))


_QUANT_OPS = ("quantize_linear", "dequantize_linear", "fake_quantize", "fake_dequantize", "fake_channel_wise")
_ONNX_QUANT_OPS = {"QuantizeLinear", "DequantizeLinear", "DynamicQuantizeLinear", "MatMulInteger", "QLinearMatMul"}


def is_quantized(files: ProgramFiles) -> bool:
    """True for INT8 programs: Paddle quantize/dequantize ops, ONNX integer/quantize nodes, or
    OpenVINO FakeQuantize operations."""
    if files.format is ProgramFormat.PIR:
        text = files.model_file.read_text(encoding="utf-8", errors="replace")
        return any(f'.{op}"' in text for op in _QUANT_OPS)
    if files.format is ProgramFormat.LEGACY:
        # The ops of the program's blocks: a 2.x file also carries the whole op registry, whose
        # names include every quantize op.
        program = legacy_program(files.model_file)
        return any(op.type.startswith(_QUANT_OPS) for block in program.blocks for op in block.ops)
    if files.format is ProgramFormat.OPENVINO_IR:
        return any(op.get_type_name() == "FakeQuantize" for op in _openvino_ir(files.model_file).get_ops())
    import onnx

    model = onnx.load(str(files.model_file), load_external_data=False)
    return any(node.op_type in _ONNX_QUANT_OPS for node in model.graph.node)


def position_rows(files: ProgramFiles) -> int | None:
    """Rows of the program's position embedding table: the longest sequence it can take (a
    pruned recipe cuts the table to its max_seq_length, e.g. 16). The table is the embedding
    weight looked up by positions: ids the program counts itself (cumsum or arange of the input's
    shape), or a `position_ids` input. None when the program has no such lookup."""
    readers = {ProgramFormat.PIR: _pir_graph, ProgramFormat.LEGACY: _legacy_graph, ProgramFormat.ONNX: _onnx_graph}
    if files.format not in readers:  # an OpenVINO IR is a build's output, not a source whose limits are read
        return None
    try:
        lookups, producers = readers[files.format](files.model_file)
    except (KeyError, ValueError, IndexError, TypeError, AttributeError, RecursionError):  # unusual: no bound read
        return None
    rows = [table_rows for ids, table_rows in lookups if _counts_positions(ids, producers)]
    return min(rows) if rows else None


_POSITION_OPS = ("cumsum", "arange", "range")


def _counts_positions(value: str, producers: dict[str, tuple[str, list[str]]]) -> bool:
    """Whether `value` is the position_ids input or is computed from a cumsum/arange."""
    seen, todo = set(), [value]
    while todo:
        current = todo.pop()
        if current in seen:
            continue
        seen.add(current)
        kind, inputs = producers.get(current, ("", []))
        if kind == "feed:position_ids" or kind.lower() in _POSITION_OPS:
            return True
        todo.extend(inputs)
    return False


def _pir_graph(path: Path):
    """([(ids value, table rows)] of every embedding lookup, {value: (op kind, input values)})."""
    ops = list(_pir_ops(json.loads(path.read_text(encoding="utf-8"))["program"]))
    producers, tables, lookups = {}, {}, []
    for op in ops:
        kind = op.get("#", "").rsplit(".", 1)[-1]
        outs = op.get("O") if isinstance(op.get("O"), list) else [op.get("O")]
        inputs = [str(i["%"]) for i in op.get("I", []) if isinstance(i, dict) and "%" in i]
        for out in outs:
            if isinstance(out, dict) and "%" in out:
                producers[str(out["%"])] = (f"feed:{_pir_attr(op, 'name')}" if kind == "data" else kind, inputs)
                if op.get("#") == "p":
                    tables[str(out["%"])] = int(out["TT"]["D"][1][0])
    for op in ops:
        if op.get("#", "").rsplit(".", 1)[-1] == "embedding":
            ids, weight = (str(i["%"]) for i in op["I"][:2])
            if weight in tables:
                lookups.append((ids, tables[weight]))
    return lookups, producers


def _legacy_graph(path: Path):
    program = legacy_program(path)
    block = program.blocks[0]
    variables = {v.name: v for v in block.vars}
    producers, lookups = {}, []
    for op in block.ops:
        inputs = [a for slot in op.inputs for a in slot.arguments]
        for slot in op.outputs:
            for name in slot.arguments:
                producers[name] = (f"feed:{name}" if op.type == "feed" else op.type, inputs)
        if op.type in ("lookup_table_v2", "lookup_table"):
            slots = {slot.parameter: list(slot.arguments) for slot in op.inputs}
            var_type = variables[slots["W"][0]].type
            tensor = getattr(var_type, "dense_tensor", None) or var_type.lod_tensor
            lookups.append((slots["Ids"][0], int(tensor.tensor.dims[0])))
    return lookups, producers


def _onnx_graph(path: Path):
    import onnx

    model = onnx.load(str(path), load_external_data=False)
    tables = {i.name: tuple(i.dims) for i in model.graph.initializer}
    producers = {v.name: (f"feed:{v.name}", []) for v in model.graph.input}
    for node in model.graph.node:
        if node.op_type == "Constant":  # paddle2onnx keeps weights as Constant nodes
            value = next((a.t for a in node.attribute if a.name == "value"), None)
            if value is not None:
                tables[node.output[0]] = tuple(value.dims)
        for out in node.output:
            producers[out] = (node.op_type, list(node.input))
    lookups = [(node.input[1], tables[node.input[0]][0]) for node in model.graph.node
               if node.op_type == "Gather" and len(tables.get(node.input[0], ())) == 2]
    return lookups, producers
