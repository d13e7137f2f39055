"""Model step: the ERNIE program on Paddle Inference or ONNX Runtime.

Triton's dynamic batcher hands several requests to one `execute` (inputs are declared
`allow_ragged_batch`, so requests of different lengths batch together). They are padded
to the longest, concatenated, run once, and the outputs are split back per request
(token-level outputs cut back to each request's own length).
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
from serving_core.runtime import RuntimeKind, create_runner, pad_and_concat, split_rows  # noqa: E402


class TritonPythonModel:
    def initialize(self, args):
        config = model_config_of(args)
        settings = from_parameters(ModelStepSettings, parameters_from_model_config(config))
        version_dir = Path(args["model_repository"]) / args["model_version"]
        files = ProgramFiles(ProgramFormat(settings.program_format), version_dir / settings.model_file,
                             version_dir / settings.params_file if settings.params_file else None)
        self.runner = create_runner(RuntimeKind(settings.runtime), files, settings.num_threads)
        self.pad_values = settings.pad_values
        self.input_names = [i["name"] for i in config["input"]]
        self.dtypes = output_dtypes(config)
        # Outputs whose second axis is the sequence axis are cut back per request.
        self.token_level = {o["name"] for o in config["output"] if len(o["dims"]) >= 1 and o["dims"][0] == -1}

    def execute(self, requests):
        try:
            parts = {name: [input_array(r, name) for r in requests] for name in self.input_names}
            first = parts[self.input_names[0]]
            sizes = [p.shape[0] for p in first]
            seq_lens = [p.shape[1] for p in first]
            feeds = {name: pad_and_concat(arrays, self.pad_values.get(name, 0)) for name, arrays in parts.items()}
            outputs = self.runner.run(feeds)
        except Exception as exc:  # never take the backend down: every request gets the error
            message = f"model step failed: {type(exc).__name__}: {exc}"
            return [error_response(message) for _ in requests]
        per_request = {name: split_rows(outputs[name], sizes, seq_lens if name in self.token_level else None)
                       for name in self.dtypes}
        return [pb_utils.InferenceResponse(output_tensors=[
            output_tensor(name, per_request[name][i], self.dtypes[name]) for name in self.dtypes])
            for i in range(len(requests))]
