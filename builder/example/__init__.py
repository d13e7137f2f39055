"""Offline example models: generated vocabulary, small data sets, seconds of training."""
from __future__ import annotations

from pathlib import Path

from serving_core.interface import Task

from builder.example.training import ExampleSpec


def make_example(task: Task, output: Path, spec: ExampleSpec | None = None, show_progress: bool = True) -> dict:
    """Create the example model of `task` in `output` (no download)."""
    from builder.example.embedding_example import make_embedding_example
    from builder.example.intent_slot_example import make_intent_slot_example
    from builder.example.qa_example import make_qa_example
    from builder.example.seq_cls_example import make_seq_cls_example
    from builder.example.token_cls_example import make_token_cls_example

    makers = {Task.SEQ_CLS: make_seq_cls_example, Task.TOKEN_CLS: make_token_cls_example,
              Task.QA: make_qa_example, Task.INTENT_SLOT: make_intent_slot_example,
              Task.EMBEDDING: make_embedding_example}
    if spec is None:
        return makers[task](output, show_progress=show_progress)
    return makers[task](output, spec, show_progress)
