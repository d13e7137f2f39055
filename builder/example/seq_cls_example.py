"""`builder make-example --task seq_cls`: a small intent classifier, trained for seconds."""
from __future__ import annotations

from pathlib import Path

import builder.example.intents as intents
from builder.example.training import ExampleSpec, finish, pad, prepare, train, write_lines

__all__ = ["ExampleSpec", "make_seq_cls_example"]


def make_seq_cls_example(output: Path, spec: ExampleSpec = ExampleSpec(), show_progress: bool = True) -> dict:
    """Write a PaddleNLP checkpoint (config, weights, tokenizer, label.txt) plus its data files."""
    import paddle
    from paddlenlp.transformers import ErnieConfig, ErnieForSequenceClassification

    labels = intents.labels()
    data = intents.examples(spec.seed)
    split = int(len(data) * 0.9)
    train_rows, dev = intents.balanced(data[:split], spec.seed), data[split:]
    tokenizer, config = prepare(output, [t for t, _ in data] + intents.DEMO_TEXTS, spec)
    write_lines(output / "label.txt", labels)
    write_lines(output / "train.txt", [f"{t}\t{label}" for t, label in data[:split]])
    write_lines(output / "dev.txt", [f"{t}\t{label}" for t, label in dev])
    write_lines(output / "data.txt", intents.DEMO_TEXTS)
    model = ErnieForSequenceClassification(ErnieConfig(
        **config, num_labels=len(labels), id2label=dict(enumerate(labels)),
        label2id={label: i for i, label in enumerate(labels)}))
    label_ids = {label: i for i, label in enumerate(labels)}
    loss_fn = paddle.nn.CrossEntropyLoss()

    def forward(rows):
        encoded = tokenizer([t for t, _ in rows], max_length=64, truncation=True)
        ids, types = pad(encoded["input_ids"], 0), pad(encoded["token_type_ids"], 0)
        return model(paddle.to_tensor(ids), token_type_ids=paddle.to_tensor(types))

    def step(model_, rows):
        return loss_fn(forward(rows), paddle.to_tensor([label_ids[label] for _, label in rows]))

    def accuracy(model_, rows):
        predicted = forward(rows).argmax(axis=-1).numpy()
        return float((predicted == [label_ids[label] for _, label in rows]).mean())

    summary = train(model, train_rows, dev, step, accuracy, spec, show_progress, "seq_cls")
    model.save_pretrained(str(output))
    tokenizer.save_pretrained(str(output))
    return finish(output, {"labels": len(labels), "train": len(train_rows), "dev": len(dev), **summary}, "seq_cls")
