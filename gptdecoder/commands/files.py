"""Writing what the commands produce: figures and pages, each written atomically.

The lab returns Figures and HTML strings; putting them into files is the commands' job
(with ``gptdecoder.storage.write_atomic``, so a reader never sees half a picture).
"""
from __future__ import annotations

import io
from pathlib import Path
from typing import Union

from matplotlib.figure import Figure

from gptdecoder.storage import write_atomic


def save_figure(fig: Figure, path: Union[str, Path], dpi: int = 110) -> Path:
    """Write a figure; the format follows the suffix (.png, .svg, .pdf; none means PNG)."""
    path = Path(path)
    image = io.BytesIO()
    fig.savefig(image, format=path.suffix.lstrip(".").lower() or "png", dpi=dpi)
    return write_atomic(path, image.getvalue())
