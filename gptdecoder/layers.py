"""nn.Module, nn.Linear, nn.LayerNorm, ... with less Python overhead per call.

Why this file exists: generating one token with a KV cache does very little
arithmetic (a 4-layer, d_model 128 model: ~0.4 MFLOP), so a decode step's time goes
to Python, not to matrix products. Two costs of ``torch.nn.Module`` dominate:

1. Finding a submodule or parameter. nn.Module keeps them in private dicts
   (``_modules``, ``_parameters``) and finds them in ``__getattr__``, which Python
   3.11 calls only after the normal lookup has failed and built an AttributeError:
   ~0.8 us for each ``self.attn`` or ``self.weight``. A decode step does ~160 of them.
2. Calling a module. ``nn.Module.__call__`` checks a dozen hook registries before it
   reaches ``forward`` (~1.5 us); a decode step makes ~40 module calls.

``Module`` removes most of both, without changing what nn.Module does: the first
time a submodule or parameter is assigned, its name becomes a class-level lookup
that reads nn.Module's own registry (so tools that write the registry directly, such
as quantization or ``torch.func.functional_call``, still work), and a call goes
straight to ``forward`` unless some PyTorch hook is registered or FX, torch.export or
torch.jit.trace is recording module calls. Together they make KV-cache decoding
1.29-1.37x faster than the same model on plain nn.Module / nn.Linear (the two versions
run alternately in one process, 2 threads; ~640 -> ~490 us a token).

Known differences from nn.Module (tests/test_layers_compat.py compares the two):
a hook registered *after* ``torch.compile(model)`` has compiled the model is not run
by the compiled code (register hooks first, or use ``model.compile()``); child names
become class attributes (``hasattr(GPT, "wte")`` is True); torch.ao's eager-mode
quantization matches exact classes (see Linear).

The other classes are the nn layers the model uses, built on ``Module``.
"""
from __future__ import annotations

from typing import Any

import torch
from torch import nn
# hooks registered for every module (torch.nn.modules.module.register_module_*_hook)
from torch.nn.modules.module import (
    _global_backward_hooks,
    _global_backward_pre_hooks,
    _global_forward_hooks,
    _global_forward_pre_hooks,
)


_nn_Module = nn.Module
_nn_call = nn.Module.__call__
_get_tracing_state = torch._C._get_tracing_state


class _Submodule:
    """Class attribute that finds a submodule in nn.Module's registry (``_modules``).

    A non-data descriptor: an instance attribute of the same name still wins, and a
    name this instance has not registered falls through to nn.Module.__getattr__
    (buffers, and the usual AttributeError), so lookups behave exactly as in nn.Module.
    """

    __slots__ = ("name",)

    def __init__(self, name: str) -> None:
        self.name = name

    def __get__(self, module: nn.Module | None, owner: type | None = None) -> Any:
        try:
            return module._modules[self.name]
        except (KeyError, AttributeError):  # not registered here, or looked up on the class
            return self if module is None else nn.Module.__getattr__(module, self.name)


class _Parameter(_Submodule):
    """The same for a parameter (``_parameters``)."""

    __slots__ = ()

    def __get__(self, module: nn.Module | None, owner: type | None = None) -> Any:
        try:
            return module._parameters[self.name]
        except (KeyError, AttributeError):
            return self if module is None else nn.Module.__getattr__(module, self.name)


class Module(nn.Module):
    """nn.Module with cheap attribute lookups and calls (see the module docstring)."""

    def __setattr__(self, name: str, value: Any) -> None:
        super().__setattr__(name, value)
        if isinstance(value, (nn.Module, nn.Parameter)) and not hasattr(type(self), name):
            setattr(type(self), name, (_Submodule if isinstance(value, nn.Module) else _Parameter)(name))

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        if (
            self._forward_hooks or self._forward_pre_hooks
            or self._backward_hooks or self._backward_pre_hooks
            or self._compiled_call_impl is not None
            or _global_forward_hooks or _global_forward_pre_hooks
            or _global_backward_hooks or _global_backward_pre_hooks
            or _nn_Module.__call__ is not _nn_call  # FX / torch.export record module calls by patching it
            or _get_tracing_state()  # torch.jit.trace: keep one graph method per module
        ):
            return super().__call__(*args, **kwargs)  # nn.Module's full call path
        return self.forward(*args, **kwargs)


class Linear(Module, nn.Linear):
    """nn.Linear on Module.

    ``isinstance(m, nn.Linear)`` holds, but code that matches the exact class skips
    these layers: torch.ao's eager-mode ``quantize_dynamic`` quantizes none of them.
    Set ``m.__class__ = nn.Linear`` on each first (the state is the same).
    """


class LayerNorm(Module, nn.LayerNorm):
    """nn.LayerNorm on Module."""


class Embedding(Module, nn.Embedding):
    """nn.Embedding on Module."""


class GELU(Module, nn.GELU):
    """nn.GELU on Module."""


class Dropout(nn.Dropout):
    """nn.Dropout that is free when idle (eval mode, or rate 0).

    Like HookPoint, ``__call__`` skips nn.Module's call machinery when there is
    nothing to do: generation runs ~9 dropouts per token, all of them no-ops.
    """

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        return super().__call__(x) if self.training and self.p > 0 else x
