"""Intent + slot (ERNIE 3.0 Tiny JointErnie) client for a generated Triton ensemble.

Each text comes back as the seed's predictor output, with character offsets:
``{"text": ..., "intent": "music.play", "confidence": 0.99, "slots": [{"slot": "singer",
"entity": "周杰伦", "start": 2, "end": 5, "score": 0.98}], "truncated": false}`` (`end` exclusive).

    python -m clients.intent_slot --url localhost:8001 "播放周杰伦的稻香"
"""
from __future__ import annotations

import sys

from serving_core import answers, interface
from serving_core.token_cls import unpack_spans

from .triton import TaskClient, run_cli

_OUTPUTS = [interface.INTENT, interface.CONFIDENCE, interface.TRUNCATED] + [
    f"{interface.SLOT_PREFIX}_{f}" for f in interface.SPAN_FIELDS] + [f"{interface.SLOT_PREFIX}_count"]


class IntentSlotClient(TaskClient):
    TASK = interface.Task.INTENT_SLOT.value

    def parse(self, texts: list[str]) -> list[dict]:
        columns = self.run({interface.TEXT: texts}, _OUTPUTS)
        return [answers.intent_slot(text, columns[interface.INTENT][row].decode("utf-8"),
                                    columns[interface.CONFIDENCE][row],
                                    unpack_spans(columns, interface.SLOT_PREFIX, row),
                                    columns[interface.TRUNCATED][row])
                for row, text in enumerate(texts)]


def main(argv: list[str] | None = None) -> int:
    return run_cli(argv, __doc__, IntentSlotClient, lambda client, texts, pairs, args: client.parse(texts))


if __name__ == "__main__":
    sys.exit(main())
