"""Paddle Serving pipeline client, for services built with `builder build --target paddle-serving`.

Same input conventions and the same JSON output as the Triton clients, over Paddle Serving's
gRPC PipelineClient:

    python -m clients.paddle_serving --task seq_cls --url 127.0.0.1:18090 "打开空调"
    python -m clients.paddle_serving --task qa --url 127.0.0.1:18090 $'要听什么歌\\t打开空调，播放周杰伦的稻香'

Paddle Serving 0.9's generated protobuf code needs protobuf's pure-Python implementation, so
this module must be imported before anything else loads protobuf (tritonclient included).
"""
from __future__ import annotations

from serving_core.paddle_serving_compat import prepare

prepare()

import argparse  # noqa: E402
import json  # noqa: E402
import sys  # noqa: E402

from serving_core.errors import ClientError  # noqa: E402
from serving_core.interface import REQUEST_KEYS, Task  # noqa: E402

from .text_input import read_texts  # noqa: E402

class PaddleServingError(ClientError):
    """The service answered with an error (err_no != 0) or not at all."""


class PaddleServingClient:
    def __init__(self, url: str, task: Task, timeout_s: float = 60.0):
        from paddle_serving_server.pipeline import PipelineClient

        self.task = Task(task)
        self._client = PipelineClient()
        self._client.connect([url])
        self.timeout_s = timeout_s

    def predict(self, first: list[str], second: list[str] | None = None, top_k: int = 0) -> list[dict]:
        """One answer object per input (as the Triton clients print them)."""
        keys = REQUEST_KEYS[self.task]
        feed = {keys[0]: json.dumps(first, ensure_ascii=False)}
        if second is not None:
            feed[keys[1]] = json.dumps(second, ensure_ascii=False)
        if top_k:
            feed["top_k"] = str(top_k)
        try:
            # PipelineClient.predict() prints two timing lines to stdout on every call, which
            # would corrupt our JSON lines; its own pack / send / unpack steps do the same
            # request without them (and take a timeout).
            client = self._client
            request = client._pack_request_package(feed, False, False, False)
            response = client._unpack_response_package(client._stub.inference(request, timeout=self.timeout_s),
                                                       ["result"])
        except Exception as exc:  # grpc errors: unreachable, timeout
            raise PaddleServingError(f"no answer from the service: {exc}") from exc
        if response.err_no != 0:
            raise PaddleServingError(f"error {response.err_no}: {response.err_msg}")
        return json.loads(dict(zip(response.key, response.value))["result"])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("texts", nargs="*", help="inputs; qa and pair models: 'first<TAB>second'")
    parser.add_argument("--task", required=True, choices=[t.value for t in Task])
    parser.add_argument("--url", default="127.0.0.1:18090", help="pipeline gRPC address (default: %(default)s)")
    parser.add_argument("--file", help="read inputs from this file, one a line ('-' for stdin)")
    parser.add_argument("--pairs", action="store_true", help="seq_cls sentence-pair model")
    parser.add_argument("--top-k", type=int, default=0, help="seq_cls: also print the K most probable labels")
    args = parser.parse_args(argv)
    try:
        first, second = read_texts(args.texts, args.file, args.task == "qa" or args.pairs)
        if not first:
            parser.error("no input: give it as arguments or with --file")
        client = PaddleServingClient(args.url, Task(args.task))
        for start in range(0, len(first), 64):
            chunk = slice(start, start + 64)
            for answer in client.predict(first[chunk], second[chunk] if second is not None else None, args.top_k):
                print(json.dumps(answer, ensure_ascii=False))
    except (PaddleServingError, ValueError, OSError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
