"""Named-entity (token classification) client for a generated Triton ensemble.

Each text comes back as ``{"text": ..., "entities": [{"label": "singer", "text": "周杰伦",
"start": 2, "end": 5, "score": 0.99}], "truncated": false}``: `start`/`end` are character
offsets into the text, `end` exclusive, so ``text[start:end] == entity["text"]``.

    python -m clients.token_cls --url localhost:8001 "播放周杰伦的稻香"
"""
from __future__ import annotations

import sys

from serving_core import answers, interface
from serving_core.token_cls import unpack_spans

from .triton import TaskClient, run_cli

_OUTPUTS = [f"{interface.ENTITY_PREFIX}_{f}" for f in interface.SPAN_FIELDS] + [
    f"{interface.ENTITY_PREFIX}_count", interface.TRUNCATED]


class TokenClsClient(TaskClient):
    TASK = interface.Task.TOKEN_CLS.value

    def entities(self, texts: list[str]) -> list[dict]:
        columns = self.run({interface.TEXT: texts}, _OUTPUTS)
        return [answers.token_cls(text, unpack_spans(columns, interface.ENTITY_PREFIX, row),
                                  columns[interface.TRUNCATED][row])
                for row, text in enumerate(texts)]


def main(argv: list[str] | None = None) -> int:
    return run_cli(argv, __doc__, TokenClsClient, lambda client, texts, pairs, args: client.entities(texts))


if __name__ == "__main__":
    sys.exit(main())
