"""Synthetic tasks from the interpretability literature, and how to look them up by name.

    task = get_task("sort", length=6, num_digits=3)
    prompt, answer = task.sample(random.Random(0))
    x, y, mask = build_example(prompt, answer)
"""
from __future__ import annotations

import dataclasses
import difflib

from gptdecoder.errors import UserError
from gptdecoder.tasks.arithmetic import AdditionTask, ModularTask, ParityTask
from gptdecoder.tasks.base import Example, Task, build_example, prompt_hash
from gptdecoder.tasks.compiled import CompiledTask
from gptdecoder.tasks.sequences import CopyTask, HistogramTask, ReverseTask, SortTask
from gptdecoder.tasks.structure import DyckTask, RecallTask

# The synthetic tasks: generated, trained on, benchmarked.
TASKS: dict[str, type[Task]] = {
    cls.name: cls
    for cls in (
        SortTask, ReverseTask, CopyTask, HistogramTask,
        AdditionTask, ModularTask, ParityTask, RecallTask, DyckTask,
    )
}
# Every task a run's config may name: the synthetic ones, and the outputs of a compiled
# program (gptdecoder/tasks/compiled.py: examined in the lab, never trained; needs tracr).
KNOWN_TASKS: dict[str, type[Task]] = {**TASKS, CompiledTask.name: CompiledTask}


def did_you_mean(word: str, choices) -> str:
    """' (did you mean X?)' for the closest choice, else a list of the valid ones."""
    close = difflib.get_close_matches(word, list(choices), n=1)
    if close:
        return f" (did you mean {close[0]!r}?)"
    return f" (expected one of: {', '.join(sorted(choices))})"


def task_fields(name: str) -> dict[str, dataclasses.Field]:
    """The parameters a task accepts, as dataclass fields (used to validate configs)."""
    return {f.name: f for f in dataclasses.fields(KNOWN_TASKS[name])}


def get_task(name: str, **params) -> Task:
    """Build a task by name; unknown names and parameters raise UserError with a suggestion."""
    if name not in KNOWN_TASKS:
        raise UserError(f"unknown task {name!r}{did_you_mean(name, KNOWN_TASKS)}")
    fields = task_fields(name)
    for key in params:
        if key not in fields:
            raise UserError(f"task {name!r} has no parameter {key!r}{did_you_mean(key, fields)}")
    try:
        return KNOWN_TASKS[name](**params)
    except (ValueError, TypeError) as e:
        raise UserError(f"task {name!r}: {e}") from None


__all__ = ["TASKS", "KNOWN_TASKS", "Task", "Example", "build_example", "get_task", "prompt_hash", "did_you_mean", "task_fields"]
