"""filter: keep the messages a condition holds for; the others end as filtered."""

from __future__ import annotations

from engine.conditions import compile_condition
from engine.hl7.fieldtypes import Condition
from engine.steps.base import Step, step_kind


@step_kind(
    "filter",
    Condition(),
    example="filter: {field: MSH-4, in: [QUEST, LABCORP]}\n"
    "filter: {any: [{field: PV1-2, equals: I}, {not: {field: PID-8, exists: true}}]}",
)
class Filter(Step):
    def __init__(self, config, ctx):
        super().__init__(config, ctx)
        self.predicate = compile_condition(config)

    def run(self, message, ctx):
        return self.predicate(message)
