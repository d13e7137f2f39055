"""The sentence-transformers side of benchmarks/embeddings.py. It runs in the environment that
holds torch, sentence-transformers and infinity-emb (never the project's), and imports nothing
of the project:

    python3.11 -m venv /tmp/infenv && /tmp/infenv/bin/pip install torch==2.13.0 "infinity-emb[server,torch]"
    /tmp/infenv/bin/python benchmarks/st_reference.py make --shape minilm --texts T.json --output DIR
    /tmp/infenv/bin/python benchmarks/st_reference.py vectors --model DIR --texts T.json --output V.npy
    /tmp/infenv/bin/python benchmarks/st_reference.py encode --model DIR --texts T.json --concurrency 16

make: a BERT sentence encoder of a shape users deploy, random weights (seeded), saved by
SentenceTransformer.save (mean pooling, Normalize); the vocabulary holds every character of the
texts and is filled to the shape's size. vectors: `encode` of the texts, as .npy. encode: plain
`SentenceTransformer.encode` timed in this process, batches of `concurrency` texts back to back
(the batch a perfect server would form), one JSON line with texts/s and per-call percentiles.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

# (layers, hidden, heads, FFN, vocabulary): all-MiniLM-L6-v2's shape, and ERNIE 3.0 Medium's.
SHAPES = {"minilm": (6, 384, 12, 1536, 30522), "medium": (6, 768, 12, 3072, 40000)}
MAX_SEQ_LENGTH = 128


def _texts(path: str) -> list[str]:
    return json.loads(Path(path).read_text(encoding="utf-8"))


def make(args) -> None:
    import torch
    from sentence_transformers import SentenceTransformer, models
    from transformers import BertConfig, BertModel, BertTokenizerFast

    layers, hidden, heads, ffn, size = SHAPES[args.shape]
    torch.manual_seed(1)
    output = Path(args.output)
    work = output.with_name(output.name + ".parts")
    work.mkdir(parents=True, exist_ok=True)
    characters = sorted({c for text in _texts(args.texts) for c in text.lower()})
    vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *characters]
    vocab += [f"[unused{i}]" for i in range(size - len(vocab))]
    (work / "vocab.txt").write_text("\n".join(vocab) + "\n", encoding="utf-8")
    tokenizer = BertTokenizerFast(str(work / "vocab.txt"), do_lower_case=True)
    config = BertConfig(vocab_size=size, hidden_size=hidden, num_hidden_layers=layers, num_attention_heads=heads,
                        intermediate_size=ffn, max_position_embeddings=512, type_vocab_size=2)
    BertModel(config).save_pretrained(str(work / "bert"))
    tokenizer.save_pretrained(str(work / "bert"))
    encoder = models.Transformer(str(work / "bert"), max_seq_length=MAX_SEQ_LENGTH)
    pooling = models.Pooling(encoder.get_word_embedding_dimension(), pooling_mode="mean")
    SentenceTransformer(modules=[encoder, pooling, models.Normalize()], device="cpu").save(str(output))


def vectors(args) -> None:
    import numpy as np
    from sentence_transformers import SentenceTransformer

    model = SentenceTransformer(args.model, device="cpu")
    np.save(args.output, model.encode(_texts(args.texts), batch_size=32, convert_to_numpy=True))


def encode(args) -> None:
    import numpy as np
    import torch
    from sentence_transformers import SentenceTransformer

    torch.set_num_threads(args.threads)
    model = SentenceTransformer(args.model, device="cpu")
    texts = _texts(args.texts)
    batches = [texts[i:i + args.concurrency] for i in range(0, len(texts) - args.concurrency + 1, args.concurrency)]
    warm_end = time.perf_counter() + args.warmup
    index = 0
    while time.perf_counter() < warm_end or index == 0:
        model.encode(batches[index % len(batches)], batch_size=args.concurrency)
        index += 1
    latencies, count, started = [], 0, time.perf_counter()
    while time.perf_counter() - started < args.seconds or len(latencies) < 3:
        batch = batches[len(latencies) % len(batches)]
        t = time.perf_counter()
        model.encode(batch, batch_size=args.concurrency)
        latencies.append(time.perf_counter() - t)
        count += len(batch)
    window = time.perf_counter() - started
    ms = np.array(latencies) * 1000
    print(json.dumps({"texts_per_s": count / window, "p50_ms": float(np.percentile(ms, 50)),
                      "p95_ms": float(np.percentile(ms, 95)), "p99_ms": float(np.percentile(ms, 99)),
                      "requests": len(latencies), "texts": count, "window_s": window}))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    commands = parser.add_subparsers(dest="command", required=True)
    p = commands.add_parser("make")
    p.add_argument("--shape", choices=sorted(SHAPES), required=True)
    p.add_argument("--texts", required=True)
    p.add_argument("--output", required=True)
    p = commands.add_parser("vectors")
    p.add_argument("--model", required=True)
    p.add_argument("--texts", required=True)
    p.add_argument("--output", required=True)
    p = commands.add_parser("encode")
    p.add_argument("--model", required=True)
    p.add_argument("--texts", required=True)
    p.add_argument("--concurrency", type=int, default=1)
    p.add_argument("--seconds", type=float, default=5.0)
    p.add_argument("--warmup", type=float, default=1.0)
    p.add_argument("--threads", type=int, default=2)
    args = parser.parse_args(argv)
    {"make": make, "vectors": vectors, "encode": encode}[args.command](args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
