"""Model step: the ERNIE program on Paddle Inference or ONNX Runtime.

Triton's dynamic batcher hands several requests to one `execute` (inputs are declared
`allow_ragged_batch`, so requests of different lengths batch together). Each request is
checked first (ids within the vocabulary, shapes, lengths: serving_core.feed_checks); the
valid ones are padded to the longest, run as one batch by `RequestBatcher` and split back.
If the joined batch fails, each request is run alone, so one request's error is its own.
"""
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))


import triton_python_backend_utils as pb_utils  # noqa: E402
from triton_helpers import StepModel, input_array, output_tensor, rejection  # noqa: E402

from serving_core.errors import InvalidRequest  # noqa: E402
from serving_core.feed_checks import FeedLimits, check_feeds, check_finite  # noqa: E402
from serving_core.model_step import ModelStepSettings, create_step_runner  # noqa: E402
from serving_core.runtime import RequestBatcher  # noqa: E402


class TritonPythonModel(StepModel):
    """Its own `execute`: requests are checked one by one before the joined batch runs."""

    STEP = "model step"

    def setup(self):
        config = self.config
        settings = self.read_settings(ModelStepSettings)
        runner = create_step_runner(settings, self.version_dir, warn=pb_utils.Logger.log_warn,
                                    log=pb_utils.Logger.log_info)
        # Leading -1 dims of an output (windows, tokens) are cut back to each request's own.
        dynamic_axes = {o["name"]: next((i for i, d in enumerate(o["dims"]) if d != -1), len(o["dims"]))
                        for o in config["output"]}
        self.batcher = RequestBatcher(runner, settings.pad_values, dynamic_axes, settings.max_batch_tokens)
        self.input_names = [i["name"] for i in config["input"]]
        self.limits = FeedLimits(settings.value_limits, settings.max_seq_len, len(config["input"][0]["dims"]),
                                 settings.max_windows)

    def execute(self, requests):
        answers = [None] * len(requests)
        valid, feeds = [], []
        for index, request in enumerate(requests):
            feed = {name: input_array(request, name) for name in self.input_names}
            try:
                if self.limits.value_limits:
                    check_feeds(feed, self.limits)
            except InvalidRequest as exc:
                answers[index] = rejection(request, exc, self.STEP)
                continue
            valid.append(index)
            feeds.append(feed)
        for index, result in zip(valid, self._run(feeds)):
            if isinstance(result, Exception):
                answers[index] = rejection(requests[index], result, self.STEP)
                continue
            try:
                check_finite(result)
            except InvalidRequest as exc:
                answers[index] = rejection(requests[index], exc, self.STEP)
                continue
            answers[index] = pb_utils.InferenceResponse(output_tensors=[
                output_tensor(name, result[name], dtype) for name, dtype in self.dtypes.items()])
        return answers

    def _run(self, feeds: list) -> list:
        """Outputs per request, or the exception that request alone raised."""
        if not feeds:
            return []
        try:
            return self.batcher.run(feeds)
        except Exception as exc:  # never take the backend down
            if len(feeds) == 1:
                return [exc]
        results = []
        for feed in feeds:  # find whose request it was: the others still get their answers
            try:
                results.append(self.batcher.run([feed])[0])
            except Exception as exc:
                results.append(exc)
        return results
