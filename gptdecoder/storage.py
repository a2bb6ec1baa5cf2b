"""Files in and out, safely: written whole or not at all, and read without running code.

* ``write_atomic`` writes to a temporary file beside the target, then renames: a crash,
  Ctrl-C or a full disk mid-write leaves the previous file (or none) in place, never
  half of a new one -- which matters for checkpoints, configs, results and caches that
  later runs read back.
* ``load_weights_only`` / ``save_checkpoint`` are torch.load / torch.save for
  checkpoints: tensors and plain values only, so opening a file never runs code from it.
"""
from __future__ import annotations

import io
import os
import re
import uuid
from pathlib import Path
from typing import Any, Union

import torch

from gptdecoder.errors import UserError


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


def save_checkpoint(path: Union[str, Path], state: dict) -> None:
    """torch.save, atomically: a crash mid-save keeps the previous checkpoint."""
    buffer = io.BytesIO()
    torch.save(state, buffer)
    write_atomic(path, buffer.getvalue())


def load_weights_only(path: Union[str, Path], device: str = "cpu") -> Any:
    """``torch.load(path, weights_only=True)``, with a one-line UserError for a missing or refused file.

    weights_only admits tensors and plain values (dicts, lists, numbers, strings) and
    nothing else, so a file that would need arbitrary unpickling -- which can run code --
    is refused unrun. There is no fallback to unsafe loading.
    """
    path = Path(path)
    if not path.is_file():
        raise UserError(f"no checkpoint at {str(path)!r}")
    try:
        return torch.load(path, map_location=device, weights_only=True)
    except Exception as e:
        message = " ".join(str(e).split())
        refused = re.search(r"Unsupported global: GLOBAL (\S+)", message)
        if refused:
            raise UserError(
                f"cannot read checkpoint {str(path)!r} safely: it refers to {refused.group(1)}, which "
                f"weights_only loading refuses (unpickling it could run code); gptdecoder loads tensors and "
                f"plain values only"
            ) from None
        raise UserError(f"cannot read checkpoint {str(path)!r} safely: not a checkpoint torch.load reads with "
                        f"weights_only=True ({type(e).__name__}: {message[:200]})") from None
