"""Where and in what precision to run: device auto-detection and bf16 autocast.

Kept apart from the model so that the model stays pure maths and every entry point
(trainer, benchmarks, notebook) picks device and precision the same way.
"""
from __future__ import annotations

import contextlib
from typing import ContextManager

import torch

PRECISIONS = ("auto", "fp32", "bf16")
DEVICES = ("auto", "cpu", "cuda", "mps")


def check_device(device: str) -> None:
    """ValueError unless ``device`` is a name resolve_device knows (no hardware is asked)."""
    if device not in DEVICES and not device.startswith("cuda:"):
        raise ValueError(f"device={device!r}: expected one of {', '.join(DEVICES)}")


def resolve_device(device: str = "auto") -> str:
    """'auto' -> 'cuda' when present, else 'mps', else 'cpu'."""
    check_device(device)
    if device != "auto":
        return device
    if torch.cuda.is_available():
        return "cuda"
    if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
        return "mps"
    return "cpu"


def cpu_has_native_bf16() -> bool:
    """True when the CPU has bf16 matrix instructions (AMX or AVX512-BF16).

    On such CPUs bf16 autocast runs matmuls several times faster than fp32; on others
    it is emulated and slower, so 'auto' precision must not pick it there.
    """
    try:
        with open("/proc/cpuinfo") as f:
            flags = f.read()
    except OSError:
        return False
    return "amx_bf16" in flags or "avx512_bf16" in flags


def check_precision(precision: str) -> None:
    """ValueError unless ``precision`` is a name resolve_precision knows."""
    if precision not in PRECISIONS:
        raise ValueError(f"precision={precision!r}: expected one of {', '.join(PRECISIONS)}")


def resolve_precision(precision: str, device: str) -> str:
    """'auto' -> 'bf16' on CUDA with bf16 support or on CPUs with native bf16, else 'fp32'."""
    check_precision(precision)
    if precision != "auto":
        return precision
    device_type = device.split(":")[0]
    if device_type == "cuda" and torch.cuda.is_bf16_supported():
        return "bf16"
    if device_type == "cpu" and cpu_has_native_bf16():
        return "bf16"
    return "fp32"


def autocast(device: str, precision: str) -> ContextManager:
    """The context to run forward passes in: bf16 autocast, or nothing for fp32."""
    if precision == "bf16":
        return torch.autocast(device_type=device.split(":")[0], dtype=torch.bfloat16)
    return contextlib.nullcontext()
