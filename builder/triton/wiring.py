"""Check that an ensemble's steps fit together before anything is written."""
from __future__ import annotations

from tritonclient.grpc import model_config_pb2 as mc

from serving_core.errors import BuildBug


class _Declared:
    """A config's tensor with its whole shape: the batch axis (-1) added where the model batches."""

    def __init__(self, tensor, config: mc.ModelConfig):
        self.name, self.data_type, self.optional = tensor.name, tensor.data_type, getattr(tensor, "optional", False)
        self.dims = ([-1] if config.max_batch_size > 0 else []) + list(tensor.dims)


def _dims_agree(a, b) -> bool:
    return len(a) == len(b) and all(x == y or -1 in (x, y) for x, y in zip(a, b))


def _describe(tensor) -> str:
    return f"{mc.DataType.Name(tensor.data_type)} {list(tensor.dims)}"


def wiring_problems(ensemble: mc.ModelConfig, models: dict[str, mc.ModelConfig]) -> list[str]:
    """Every problem found: unknown models or tensors, dtype or dims mismatches, unproduced outputs."""
    problems: list[str] = []
    available = {t.name: _Declared(t, ensemble) for t in ensemble.input}  # tensor -> who produces it
    for index, step in enumerate(ensemble.ensemble_scheduling.step):
        where = f"step {index} ({step.model_name})"
        model = models.get(step.model_name)
        if model is None:
            problems.append(f"{where}: no model named {step.model_name!r} in the repository")
            continue
        if ensemble.max_batch_size > 0 and model.max_batch_size == 0:
            problems.append(f"{where}: the ensemble batches (max_batch_size {ensemble.max_batch_size}) "
                            "but this step does not")
        model_inputs = {t.name: _Declared(t, model) for t in model.input}
        for missing in sorted(set(model_inputs) - set(step.input_map)):
            if not model_inputs[missing].optional:
                problems.append(f"{where}: input {missing!r} is not fed")
        for model_input, tensor in step.input_map.items():
            if model_input not in model_inputs:
                problems.append(f"{where}: the model has no input {model_input!r}")
            elif tensor not in available:
                problems.append(f"{where}: {tensor!r} is not an ensemble input nor an earlier step's output")
            else:
                source, target = available[tensor], model_inputs[model_input]
                if source.data_type != target.data_type or not _dims_agree(source.dims, target.dims):
                    problems.append(f"{where}: {tensor!r} is {_describe(source)} but input "
                                    f"{model_input!r} wants {_describe(target)}")
        model_outputs = {t.name: _Declared(t, model) for t in model.output}
        for model_output, tensor in step.output_map.items():
            if model_output not in model_outputs:
                problems.append(f"{where}: the model has no output {model_output!r}")
            elif tensor in available:
                problems.append(f"{where}: {tensor!r} is produced twice")
            else:
                available[tensor] = model_outputs[model_output]
    for declared in ensemble.output:
        output = _Declared(declared, ensemble)
        produced = available.get(output.name)
        if produced is None:
            problems.append(f"ensemble output {output.name!r} is produced by no step")
        elif produced.data_type != output.data_type or not _dims_agree(produced.dims, output.dims):
            problems.append(f"ensemble output {output.name!r} is declared {_describe(output)} "
                            f"but its step gives {_describe(produced)}")
    return problems


def check_wiring(ensemble: mc.ModelConfig, models: dict[str, mc.ModelConfig]) -> None:
    problems = wiring_problems(ensemble, models)
    if problems:
        raise BuildBug("the generated ensemble does not fit together (a builder bug, please report):\n  "
                        + "\n  ".join(problems))
