"""Model step: the ERNIE program on Paddle Inference or ONNX Runtime.

Triton's dynamic batcher hands several requests to one `execute` (inputs are declared
`allow_ragged_batch`, so requests of different lengths batch together). `RequestBatcher`
pads them to the longest, runs them as one batch (windows of long texts flattened, padding
windows skipped) and splits the outputs back per request.
"""
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from pathlib import Path  # noqa: E402

import triton_python_backend_utils as pb_utils  # noqa: E402
from triton_helpers import error_response, input_array, model_config_of, output_dtypes, output_tensor  # noqa: E402

from serving_core.model_step import ModelStepSettings  # noqa: E402
from serving_core.parameters import from_parameters, parameters_from_model_config  # noqa: E402
from serving_core.program import ProgramFiles, ProgramFormat  # noqa: E402
from serving_core.runtime import RequestBatcher, RuntimeKind, create_runner  # noqa: E402


class TritonPythonModel:
    def initialize(self, args):
        config = model_config_of(args)
        settings = from_parameters(ModelStepSettings, parameters_from_model_config(config))
        version_dir = Path(args["model_repository"]) / args["model_version"]
        files = ProgramFiles(ProgramFormat(settings.program_format), version_dir / settings.model_file,
                             version_dir / settings.params_file if settings.params_file else None)
        runner = create_runner(RuntimeKind(settings.runtime), files, settings.num_threads, settings.precision)
        # Leading -1 dims of an output (windows, tokens) are cut back to each request's own.
        dynamic_axes = {o["name"]: next((i for i, d in enumerate(o["dims"]) if d != -1), len(o["dims"]))
                        for o in config["output"]}
        self.batcher = RequestBatcher(runner, settings.pad_values, dynamic_axes, settings.max_batch_tokens)
        self.input_names = [i["name"] for i in config["input"]]
        self.dtypes = output_dtypes(config)

    def execute(self, requests):
        try:
            feeds = [{name: input_array(r, name) for name in self.input_names} for r in requests]
            outputs = self.batcher.run(feeds)
        except Exception as exc:  # never take the backend down: every request gets the error
            message = f"model step failed: {type(exc).__name__}: {exc}"
            return [error_response(message) for _ in requests]
        return [pb_utils.InferenceResponse(output_tensors=[
            output_tensor(name, result[name], dtype) for name, dtype in self.dtypes.items()])
            for result in outputs]
