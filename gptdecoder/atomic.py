"""Files appear whole or not at all: write to a temporary file beside the target, then rename.

A crash, Ctrl-C or a full disk mid-write leaves the previous file (or none) in place,
never half of a new one -- which matters for checkpoints, configs, results and caches
that later runs read back.
"""
from __future__ import annotations

import os
import uuid
from pathlib import Path
from typing import Union


def write_atomic(path: Union[str, Path], data: Union[bytes, str]) -> Path:
    """Write ``data`` (text is UTF-8 encoded) to ``path`` atomically; returns the path."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    # a name no other writer uses; open(..., "xb") gives it the usual permissions (umask)
    tmp = path.with_name(f".{path.name}.{os.getpid()}-{uuid.uuid4().hex[:8]}.tmp")
    try:
        with open(tmp, "xb") as f:
            f.write(data.encode("utf-8") if isinstance(data, str) else data)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return path
