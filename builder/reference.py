"""The source model run the PaddleNLP way: PaddleNLP's own tokenizer, then the model.

This is deliberately independent of the serving path (our Rust tokenizer, our runtimes),
so agreement between the two proves the served answers, tokenizer included.
"""
from __future__ import annotations

import numpy as np

from serving_core.interface import Task
from serving_core.runtime import PaddleRunner

from .export import load_dygraph_model
from .sources import ModelSource, SourceKind


def paddlenlp_tokenizer(source: ModelSource):
    from paddlenlp.transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(str(source.tokenizer_dir))


def reference_logits(source: ModelSource, texts: list[str], pairs: list[str] | None, max_seq_len: int,
                     batch_size: int = 32) -> np.ndarray:
    """[N, C] logits of the source model (dygraph for checkpoints, Paddle Inference for exports)."""
    import paddle

    tokenizer = paddlenlp_tokenizer(source)
    if source.kind is SourceKind.CHECKPOINT:
        model = load_dygraph_model(source, Task.SEQ_CLS)
        run = lambda ids, types: model(paddle.to_tensor(ids), token_type_ids=paddle.to_tensor(types)).numpy()  # noqa: E731
    else:
        runner = PaddleRunner(source.program)
        names = [t.name for t in runner.signature.inputs]
        dtypes = {t.name: t.dtype for t in runner.signature.inputs}

        def run(ids, types):
            feeds = {"input_ids": ids, "token_type_ids": types}
            return next(iter(runner.run({n: feeds[n].astype(dtypes[n]) for n in names}).values()))

    parts = []
    with paddle.no_grad():
        for start in range(0, len(texts), batch_size):
            chunk = texts[start:start + batch_size]
            pair_chunk = pairs[start:start + batch_size] if pairs is not None else None
            encoded = tokenizer(chunk, text_pair=pair_chunk, max_length=max_seq_len, truncation=True,
                                padding=True, return_attention_mask=False)
            ids = np.asarray(encoded["input_ids"], dtype=np.int64)
            types = np.asarray(encoded["token_type_ids"], dtype=np.int64)
            parts.append(np.asarray(run(ids, types), dtype=np.float32))
    return np.concatenate(parts)
