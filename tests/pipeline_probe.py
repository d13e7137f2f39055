"""Run inside a subprocess: concurrent PipelineClient requests, one JSON line of answers each.

    python -m tests.pipeline_probe URL TASK N_THREADS TEXT...
"""
from clients.paddle_serving import PaddleServingClient  # first: sets up protobuf for Paddle Serving

import concurrent.futures  # noqa: E402
import json  # noqa: E402
import sys  # noqa: E402


def main() -> None:
    url, task, threads, texts = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4:]
    clients = [PaddleServingClient(url, task) for _ in range(threads)]
    with concurrent.futures.ThreadPoolExecutor(threads) as pool:
        answers = list(pool.map(lambda i: clients[i % threads].predict([texts[i]])[0], range(len(texts))))
    for answer in answers:
        print(json.dumps(answer, ensure_ascii=False))


if __name__ == "__main__":
    main()
