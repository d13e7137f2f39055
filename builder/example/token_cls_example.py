"""`builder make-example --task token_cls`: a slot tagger (BIO) on the car-assistant data."""
from __future__ import annotations

from pathlib import Path

import builder.example.intents as intents
from builder.example.training import ExampleSpec, finish, pad, prepare, token_tags, train, write_lines

TOKEN_CLS_DEMO = ["播放周杰伦的稻香", "导航到北京西站", "给妈妈打个电话然后查一下上海的天气", "play Love Story"]


def make_token_cls_example(output: Path, spec: ExampleSpec = ExampleSpec(), show_progress: bool = True) -> dict:
    import paddle
    from paddlenlp.transformers import ErnieConfig, ErnieForTokenClassification

    tags = intents.slot_tags()
    tag_ids = {t: i for i, t in enumerate(tags)}
    data = intents.annotated_examples(spec.seed)
    split = int(len(data) * 0.9)
    train_rows, dev = data[:split], data[split:]
    tokenizer, config = prepare(output, [t for t, _, _ in data] + TOKEN_CLS_DEMO, spec)
    write_lines(output / "label.txt", tags)
    write_lines(output / "data.txt", TOKEN_CLS_DEMO)
    model = ErnieForTokenClassification(ErnieConfig(**config, num_labels=len(tags)))
    loss_fn = paddle.nn.CrossEntropyLoss(ignore_index=-100)

    def forward(rows):
        ids, types, labels = token_tags(tokenizer, [r[0] for r in rows], [r[2] for r in rows], tag_ids)
        logits = model(paddle.to_tensor(pad(ids, 0)), token_type_ids=paddle.to_tensor(pad(types, 0)))
        return logits, pad(labels, -100)

    def step(model_, rows):
        logits, labels = forward(rows)
        return loss_fn(logits.reshape([-1, len(tags)]), paddle.to_tensor(labels.reshape(-1)))

    def accuracy(model_, rows):
        logits, labels = forward(rows)
        predicted, mask = logits.argmax(axis=-1).numpy(), labels != -100
        return float((predicted[mask] == labels[mask]).mean())

    summary = train(model, train_rows, dev, step, accuracy, spec, show_progress, "token_cls")
    model.save_pretrained(str(output))
    tokenizer.save_pretrained(str(output))
    return finish(output, {"labels": len(tags), "train": len(train_rows), "dev": len(dev), **summary}, "token_cls")


__all__ = ["make_token_cls_example", "TOKEN_CLS_DEMO"]
