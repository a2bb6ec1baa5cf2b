"""Training data: synthetic tasks and text corpora behind one DataSource interface.

    data = open_data(config, batch_size=256)   # TaskData or TextData
    x, y, mask = data.get_batch(step)           # (B, T) each
    data.evaluate(model)                        # {"accuracy": ...} or {"val_loss": ...}
"""
from __future__ import annotations

from typing import Callable, Optional

from gptdecoder.config import Config
from gptdecoder.data.source import Batch, DataSource, step_seed
from gptdecoder.data.tasks import TaskData
from gptdecoder.data.text import TextData
from gptdecoder.tasks import Task


def open_data(config: Config, batch_size: int, rank: int = 0, device: str = "cpu", precision: str = "fp32",
              log: Callable[[str], None] = print, task: Optional[Task] = None) -> DataSource:
    """The data source a config asks for, batching ``batch_size`` sequences for process ``rank``.
    ``task``: the config's task when the caller has built it already."""
    if config.is_text:
        return TextData(config, batch_size, rank, device, precision, log)
    return TaskData(config, batch_size, rank, device, precision, task)


__all__ = ["Batch", "DataSource", "TaskData", "TextData", "open_data", "step_seed"]
