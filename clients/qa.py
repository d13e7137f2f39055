"""Extractive question answering client for a generated Triton ensemble.

Input: question and context (CLI: `question<TAB>context`, one pair a line or argument).
Output per pair: ``{"question": ..., "answer": "周杰伦", "start": 7, "end": 10, "score": 13.2,
"probability": 0.91}``: offsets into the context, `end` exclusive; an empty answer with
start -1 means no answer (under the build's --no-answer-threshold).

    python -m clients.qa --url localhost:8001 $'要听什么歌\t打开空调，播放周杰伦的稻香'
"""
from __future__ import annotations

import sys

from serving_core import answers, interface
from serving_core.qa import Answer

from serving_core.errors import ClientError

from .triton import TaskClient, run_cli

_OUTPUTS = [interface.ANSWER, interface.ANSWER_START, interface.ANSWER_END, interface.SCORE, interface.PROBABILITY]


class QAClient(TaskClient):
    TASK = interface.Task.QA.value

    def answer(self, questions: list[str], contexts: list[str]) -> list[dict]:
        if len(questions) != len(contexts):
            raise ClientError(f"{len(questions)} questions but {len(contexts)} contexts")
        columns = self.run({interface.QUESTION: questions, interface.CONTEXT: contexts}, _OUTPUTS)
        return [answers.qa(question, Answer(columns[interface.ANSWER][row].decode("utf-8"),
                                            int(columns[interface.ANSWER_START][row]),
                                            int(columns[interface.ANSWER_END][row]),
                                            float(columns[interface.SCORE][row]),
                                            float(columns[interface.PROBABILITY][row])))
                for row, question in enumerate(questions)]


def main(argv: list[str] | None = None) -> int:
    return run_cli(argv, __doc__, QAClient,
                   lambda client, questions, contexts, args: client.answer(questions, contexts),
                   pairs_help="question<TAB>context")


if __name__ == "__main__":
    sys.exit(main())
