"""`builder make-example --task qa`: extractive QA over a few joined car commands (CMRC style)."""
from __future__ import annotations

from pathlib import Path

import numpy as np

import builder.example.intents as intents
from builder.example.training import ExampleSpec, finish, pad, prepare, train, write_lines


def _features(tokenizer, rows, max_length: int = 96):
    """PaddleNLP-style features: [CLS] question [SEP] context [SEP], answer token positions."""
    encoded = tokenizer([r[0] for r in rows], [r[1] for r in rows], max_length=max_length,
                        truncation="only_second", return_offsets_mapping=True)
    starts, ends = [], []
    for offsets, types, (_, _, answer_start, answer) in zip(encoded["offset_mapping"], encoded["token_type_ids"], rows):
        answer_end = answer_start + len(answer)
        start = end = 0
        for position, ((s, e), kind) in enumerate(zip(offsets, types)):
            if kind != 1 or (s, e) == (0, 0):
                continue
            if s <= answer_start < e or (start == 0 and s >= answer_start):
                start = start or position
            if s < answer_end <= e:
                end = position
        starts.append(start)
        ends.append(max(end, start))
    return encoded, np.array(starts), np.array(ends)


def make_qa_example(output: Path, spec: ExampleSpec = ExampleSpec(train_steps=40, target_accuracy=0.9),
                    show_progress: bool = True) -> dict:
    import paddle
    from paddlenlp.transformers import ErnieConfig, ErnieForQuestionAnswering

    data = intents.qa_examples(spec.seed)
    split = int(len(data) * 0.9)
    train_rows, dev = data[:split], data[split:]
    texts = [q for q, _, _, _ in data] + [c for _, c, _, _ in data] + [t for pair in intents.QA_DEMO for t in pair]
    tokenizer, config = prepare(output, texts, spec)
    write_lines(output / "data.txt", [f"{q}\t{c}" for q, c in intents.QA_DEMO] +
                [f"{q}\t{c}" for q, c, _, _ in dev[:20]])
    model = ErnieForQuestionAnswering(ErnieConfig(**config))
    loss_fn = paddle.nn.CrossEntropyLoss()

    def forward(rows):
        encoded, starts, ends = _features(tokenizer, rows)
        start_logits, end_logits = model(paddle.to_tensor(pad(encoded["input_ids"], 0)),
                                         token_type_ids=paddle.to_tensor(pad(encoded["token_type_ids"], 0)))
        return start_logits, end_logits, starts, ends

    def step(model_, rows):
        start_logits, end_logits, starts, ends = forward(rows)
        return (loss_fn(start_logits, paddle.to_tensor(starts)) + loss_fn(end_logits, paddle.to_tensor(ends))) / 2

    def accuracy(model_, rows):
        start_logits, end_logits, starts, ends = forward(rows)
        hit = (start_logits.argmax(axis=-1).numpy() == starts) & (end_logits.argmax(axis=-1).numpy() == ends)
        return float(hit.mean())

    summary = train(model, train_rows, dev, step, accuracy, spec, show_progress, "qa")
    model.save_pretrained(str(output))
    tokenizer.save_pretrained(str(output))
    return finish(output, {"train": len(train_rows), "dev": len(dev), **summary}, "qa")
