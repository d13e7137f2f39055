"""One planner per task: the model's program, labels and options -> the target-neutral
EnsembleSpec (serving_core/spec.py) that the Triton and Paddle Serving targets render."""
from __future__ import annotations

from serving_core.interface import Task

import builder.specs.embedding as embedding
import builder.specs.intent_slot as intent_slot
import builder.specs.qa as qa
import builder.specs.seq_cls as seq_cls
import builder.specs.token_cls as token_cls
from builder.specs.common import PlanInputs

PLANNERS = {Task.SEQ_CLS: seq_cls.plan, Task.TOKEN_CLS: token_cls.plan, Task.QA: qa.plan,
            Task.INTENT_SLOT: intent_slot.plan, Task.EMBEDDING: embedding.plan}

__all__ = ["PLANNERS", "PlanInputs"]
