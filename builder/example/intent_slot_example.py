"""`builder make-example --task intent_slot`: ERNIE 3.0 Tiny's joint model, exported as the seed does.

JointErnie: one ERNIE encoder, an intent head on the pooled output and a slot head on the
token outputs. Exported with a single int32 `input_ids` input (`--input_dtype int32`) and two
outputs, beside `intent_label.txt` and `slot_label.txt`.
"""
from __future__ import annotations

from pathlib import Path

import builder.example.intents as intents
from builder.example.training import ExampleSpec, finish, pad, prepare, token_tags, train, write_lines


def joint_ernie_class():
    import paddle
    from paddlenlp.transformers import ErnieModel

    class JointErnie(paddle.nn.Layer):
        def __init__(self, config, intent_dim: int, slot_dim: int):
            super().__init__()
            self.ernie = ErnieModel(config)
            self.dropout = paddle.nn.Dropout(0.1)
            self.intent_classifier = paddle.nn.Linear(config.hidden_size, intent_dim)
            self.slot_classifier = paddle.nn.Linear(config.hidden_size, slot_dim)

        def forward(self, input_ids):
            sequence_output, pooled_output = self.ernie(input_ids)[:2]
            intent_logits = self.intent_classifier(self.dropout(pooled_output))
            slot_logits = self.slot_classifier(self.dropout(sequence_output))
            return intent_logits, slot_logits

    return JointErnie


def make_intent_slot_example(output: Path, spec: ExampleSpec = ExampleSpec(), show_progress: bool = True) -> dict:
    import paddle
    from paddlenlp.transformers import ErnieConfig

    intent_names, tags = intents.labels(), intents.slot_tags()
    intent_ids, tag_ids = {name: i for i, name in enumerate(intent_names)}, {t: i for i, t in enumerate(tags)}
    data = intents.annotated_examples(spec.seed)
    split = int(len(data) * 0.9)
    # Intents without slots have few distinct texts: repeat them so every intent is learned.
    train_rows = data[:split] + [row for row in data[:split] if not row[2]] * 4
    dev = data[split:]
    tokenizer, config = prepare(output, [t for t, _, _ in data] + intents.DEMO_TEXTS, spec)
    write_lines(output / "intent_label.txt", intent_names)
    write_lines(output / "slot_label.txt", tags)
    write_lines(output / "data.txt", intents.DEMO_TEXTS)
    ernie_config = ErnieConfig(**config)
    model = joint_ernie_class()(ernie_config, len(intent_names), len(tags))
    loss_fn = paddle.nn.CrossEntropyLoss(ignore_index=-100)

    def forward(rows):
        ids, _, labels = token_tags(tokenizer, [r[0] for r in rows], [r[2] for r in rows], tag_ids, max_length=16)
        intent_logits, slot_logits = model(paddle.to_tensor(pad(ids, 0)))
        return intent_logits, slot_logits, pad(labels, -100)

    def step(model_, rows):
        intent_logits, slot_logits, labels = forward(rows)
        intent_loss = loss_fn(intent_logits, paddle.to_tensor([intent_ids[r[1]] for r in rows]))
        slot_loss = loss_fn(slot_logits.reshape([-1, len(tags)]), paddle.to_tensor(labels.reshape(-1)))
        return intent_loss + slot_loss

    def accuracy(model_, rows):
        intent_logits, slot_logits, labels = forward(rows)
        intent_ok = (intent_logits.argmax(axis=-1).numpy() == [intent_ids[r[1]] for r in rows]).mean()
        mask = labels != -100
        slot_ok = (slot_logits.argmax(axis=-1).numpy()[mask] == labels[mask]).mean()
        return float(min(intent_ok, slot_ok))

    summary = train(model, train_rows, dev, step, accuracy, spec, show_progress, "intent_slot")
    static = paddle.jit.to_static(model, input_spec=[paddle.static.InputSpec([None, None], "int32", "input_ids")],
                                  full_graph=True)
    paddle.jit.save(static, str(output / "inference"))
    tokenizer.save_pretrained(str(output))
    ernie_config.save_pretrained(str(output))  # the encoder's config.json, as beside the seed's export
    paddle.save(model.state_dict(), str(output / "joint_ernie.pdparams"))  # dygraph weights, for pruning
    return finish(output, {"intents": len(intent_names), "slots": len(tags), "train": len(train_rows),
                           "dev": len(dev), **summary}, "intent_slot")


def load_joint_ernie(directory: Path):
    """The example's JointErnie in dygraph (from config.json, label files and joint_ernie.pdparams,
    read by the allow-list unpickler like every .pdparams)."""
    from paddlenlp.transformers import ErnieConfig

    from builder.source.pickled_weights import load_pickled_weights

    intents_count = len((directory / "intent_label.txt").read_text(encoding="utf-8").split())
    slots_count = len((directory / "slot_label.txt").read_text(encoding="utf-8").split())
    model = joint_ernie_class()(ErnieConfig.from_pretrained(str(directory)), intents_count, slots_count)
    model.set_state_dict(load_pickled_weights(directory / "joint_ernie.pdparams"))
    model.eval()
    return model
