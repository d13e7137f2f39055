"""The bare engine: the generated model step's program run in process on pre-tokenized batches.

It is the ceiling a server can reach: no tokenizer, no transport, no scheduling, one batch
after another. Windowed tasks run only the windows that hold text, as the model step does.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from serving_core.interface import Task


class BareEngine:
    def __init__(self, repository: Path, model: str, task: Task, num_threads: int):
        from builder.triton.repository import read_build
        from serving_core.model_step import create_step_runner
        from serving_core.tokenization import ErnieTokenizer

        repository = Path(repository)
        spec, _ = read_build(repository, model)
        step = spec.model_step()
        self.task = Task(task)
        self.window = spec.window
        self.tokenizer = ErnieTokenizer.from_files(
            spec.version_dir(repository, spec.tokenizer_step) / spec.tokenizer.vocab_file, spec.tokenizer)
        self.runner = create_step_runner(step, spec.version_dir(repository, spec.model_step_name), num_threads,
                                         bucketed=False)
        self.dtypes = {t.name: t.dtype for t in self.runner.signature.inputs}
        self.max_batch_tokens = step.max_batch_tokens
        self.paddle_kernels = ("oneDNN" if step.onednn else "native") if step.runtime == "paddle" else ""

    def feeds(self, rows: list[tuple[str, ...]]) -> list[dict[str, np.ndarray]]:
        """The model inputs for `rows`: [texts or live windows, L] in the program's dtypes, cut
        into batches of at most the model step's `max_batch_tokens`, as the model step runs them."""
        from serving_core.encoder import FeedEncoder

        encoder = FeedEncoder(self.tokenizer, self.window, list(self.dtypes))
        arrays, _ = encoder.encode([list(column) for column in zip(*rows)]).flat_rows(self.tokenizer.pad_id)
        total, width = arrays["input_ids"].shape
        step = max(1, self.max_batch_tokens // width) if self.max_batch_tokens else total
        return [{name: np.ascontiguousarray(arrays[name][start:start + step], dtype=dtype)
                 for name, dtype in self.dtypes.items()} for start in range(0, total, step)]

    def labels(self, rows: list[tuple[str, ...]]) -> np.ndarray:
        """[len(rows)] the highest-scoring class of the program's first output, per row (seq_cls)."""
        first = self.runner.signature.outputs[0].name
        return np.concatenate([self.runner.run(feed)[first] for feed in self.feeds(rows)]).argmax(axis=-1)

    def run(self, feeds: list[dict[str, np.ndarray]]) -> None:
        for feed in feeds:
            self.runner.run(feed)
