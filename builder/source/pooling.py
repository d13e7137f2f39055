"""An encoder (PaddleNLP's ErnieModel, BertModel...) with its pooling on top: one program that
answers a [batch, hidden] vector per window, exported as any other task's model."""
from __future__ import annotations

from serving_core.embedding import POOLINGS


def pooled_encoder(encoder, pooling: str, dense: tuple = ()):
    """A paddle Layer: (input_ids, token_type_ids) -> [batch, dim] float32 by `pooling`
    (serving_core.embedding.POOLINGS), then each of `dense` (sentence-transformers' Dense
    modules, builder.source.sentence_transformers.DenseLayer). Mean pooling averages the tokens
    that are not padding (the encoder's config.pad_token_id, which its own attention mask leaves out)."""
    import paddle

    if pooling not in POOLINGS:
        raise ValueError(f"pooling {pooling!r} is not one of {POOLINGS}")
    pad_id = int(getattr(encoder.config, "pad_token_id", 0) or 0)

    class PooledEncoder(paddle.nn.Layer):
        def __init__(self):
            super().__init__()
            self.encoder = encoder
            self.dense = paddle.nn.LayerList()
            for layer in dense:
                linear = paddle.nn.Linear(layer.weight.shape[1], layer.weight.shape[0],
                                          bias_attr=None if layer.bias is not None else False)
                linear.weight.set_value(layer.weight.T.copy())  # paddle keeps [in, out]
                if layer.bias is not None:
                    linear.bias.set_value(layer.bias)
                self.dense.append(linear)
            self.activations = [layer.activation for layer in dense]

        def forward(self, input_ids, token_type_ids=None):
            vector = self.pool(input_ids, token_type_ids)
            for linear, activation in zip(self.dense, self.activations):
                vector = linear(vector)
                if activation:
                    vector = getattr(paddle.nn.functional, activation)(vector)
            return vector

        def pool(self, input_ids, token_type_ids):
            sequence, pooled = self.encoder(input_ids, token_type_ids=token_type_ids)[:2]
            if pooling == "pooler":
                return pooled
            if pooling == "cls":
                return sequence[:, 0]
            mask = paddle.cast(input_ids != pad_id, sequence.dtype).unsqueeze(-1)
            return (sequence * mask).sum(axis=1) / paddle.clip(mask.sum(axis=1), min=1.0)

    model = PooledEncoder()
    model.eval()
    return model
