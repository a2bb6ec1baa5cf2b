"""Hook points: named places in the model where a tensor can be read or replaced.

The names follow TransformerLens, so code written for it reads the same here.
Every hook point is an identity layer that, when hooks are attached, calls each
``fn(tensor, hook)`` in turn; a hook that returns a tensor replaces the activation.

Hook point shapes (B = batch, T = positions, nh = heads, hs = d_head, d = d_model):

=================================  ===============================  ==============================
name                               shape                            what
=================================  ===============================  ==============================
hook_embed                         [B, T, d]                        token embeddings
hook_pos_embed                     [1, T, d]                        position embeddings (broadcast over B)
blocks.{i}.hook_resid_pre          [B, T, d]                        residual stream into block i
blocks.{i}.attn.hook_q/k/v         [B, T, nh, hs]                   queries / keys / values
blocks.{i}.attn.hook_scores        [B, nh, T_q, T_k]                Q.K^T / sqrt(hs), before the mask
blocks.{i}.attn.hook_masked_scores [B, nh, T_q, T_k]                scores with -inf above the diagonal
blocks.{i}.attn.hook_pattern       [B, nh, T_q, T_k]                softmax: the attention pattern
blocks.{i}.attn.hook_z             [B, T, nh, hs]                   pattern @ V, per head
blocks.{i}.hook_attn_out           [B, T, d]                        attention output (after c_proj)
blocks.{i}.hook_resid_mid          [B, T, d]                        residual after attention
blocks.{i}.mlp.hook_pre            [B, T, mlp_ratio*d]              MLP hidden, before GELU
blocks.{i}.mlp.hook_post           [B, T, mlp_ratio*d]              MLP hidden, after GELU
blocks.{i}.hook_mlp_out            [B, T, d]                        MLP output
blocks.{i}.hook_resid_post         [B, T, d]                        residual stream out of block i
ln_final.hook_normalized           [B, T, d]                        final LayerNorm output
=================================  ===============================  ==============================

Capturing ``hook_scores``, ``hook_masked_scores`` or ``hook_pattern`` switches that
layer's attention to the explicit path (it must materialise the matrices); all other
hook points leave the fused scaled_dot_product_attention path in place.

Two ways to attach a hook, both plain PyTorch underneath: ``model.hooks([(name, fn)])``
(TransformerLens's ``fn(tensor, hook)``, removed when the with-block ends), or
``model.hook_dict[name].register_forward_hook(fn)`` (PyTorch's own ``fn(module, inputs,
output)``; a hook point is an ordinary nn.Module).
"""
from __future__ import annotations

import contextlib
import re
from typing import Callable, Iterable, Iterator, Optional, Union

import torch
from torch import nn

HookFn = Callable[[torch.Tensor, "HookPoint"], Optional[torch.Tensor]]
NamesFilter = Union[None, str, Iterable[str], Callable[[str], bool]]


class HookPoint(nn.Module):
    """An identity layer with a name: the place where one tensor can be read or replaced.

    Hooks are plain functions ``fn(tensor, hook) -> tensor or None`` kept in ``self.fns``
    and run in order by ``forward``; ``model.hooks(...)`` attaches and detaches them.
    It is an ordinary nn.Module, so PyTorch's own ``register_forward_hook`` works on it
    too. Attention materialises its scores and pattern only when someone is looking
    (see ``CausalSelfAttention.explicit_path``), which is why a hook point says whether
    it is watched.
    """

    def __init__(self) -> None:
        super().__init__()
        self.name: str = ""  # filled in by the owning model (its module path)
        self.fns: list[HookFn] = []
        self.torch_hooked = False  # set once register_forward_hook has been called on it

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for fn in self.fns:
            out = fn(x, self)
            if out is not None:
                x = out
        return x

    def register_forward_hook(self, hook, *args, **kwargs):
        """nn.Module's, and remember that this point is watched. It stays watched after
        the handle is removed (the handle does not tell us): that only costs speed."""
        self.torch_hooked = True
        return super().register_forward_hook(hook, *args, **kwargs)

    def register_forward_pre_hook(self, hook, *args, **kwargs):
        """nn.Module's, likewise remembered (global module hooks are not seen)."""
        self.torch_hooked = True
        return super().register_forward_pre_hook(hook, *args, **kwargs)

    def is_watched(self) -> bool:
        """True when a hook would see this point's tensor."""
        return bool(self.fns) or self.torch_hooked

    def extra_repr(self) -> str:
        return self.name


def name_hook_points(model: nn.Module) -> dict[str, HookPoint]:
    """Give every HookPoint its module path as name; return {name: hook point}."""
    points = {}
    for name, module in model.named_modules():
        if isinstance(module, HookPoint):
            module.name = name
            points[name] = module
    return points


def _as_predicate(names_filter: NamesFilter) -> Callable[[str], bool]:
    """None -> everything; a string -> that name or regex; a list -> those names; or a callable."""
    if names_filter is None:
        return lambda name: True
    if callable(names_filter):
        return names_filter
    if isinstance(names_filter, str):
        pattern = re.compile(names_filter)
        return lambda name: name == names_filter or pattern.fullmatch(name) is not None
    wanted = set(names_filter)
    return lambda name: name in wanted


def resolve_names(hook_dict: dict[str, HookPoint], names_filter: NamesFilter) -> list[str]:
    """The hook point names that a filter selects, in model order."""
    keep = _as_predicate(names_filter)
    names = [name for name in hook_dict if keep(name)]
    if isinstance(names_filter, (list, tuple, set)):
        unknown = sorted(set(names_filter) - set(hook_dict))
        if unknown:
            raise KeyError(f"unknown hook point(s) {unknown}; see the table in gptdecoder/hooks.py")
    return names


@contextlib.contextmanager
def attach_hooks(hook_dict: dict[str, HookPoint], fwd_hooks: Iterable[tuple[str, HookFn]]) -> Iterator[None]:
    """Attach ``(name, fn)`` hooks for the duration of a with-block; always detached after.

    ``name`` may also be a callable ``name -> bool`` selecting several hook points.
    """
    attached: list[tuple[HookPoint, HookFn]] = []
    try:
        for name, fn in fwd_hooks:
            if callable(name):
                targets = [hook_dict[n] for n in resolve_names(hook_dict, name)]
            elif name in hook_dict:
                targets = [hook_dict[name]]
            else:
                raise KeyError(f"unknown hook point {name!r}; see the table in gptdecoder/hooks.py")
            for point in targets:
                point.fns.append(fn)
                attached.append((point, fn))
        yield
    finally:
        for point, fn in reversed(attached):
            point.fns.remove(fn)


def run_with_cache(model: nn.Module, *args, names_filter: NamesFilter = None, **kwargs):
    """Run ``model(*args, **kwargs)`` and return ``(output, cache)``.

    ``cache`` maps hook point names to detached activations; only the names selected
    by ``names_filter`` are kept, so capturing one pattern does not store everything.
    """
    cache: dict[str, torch.Tensor] = {}

    def save(tensor: torch.Tensor, hook: HookPoint) -> None:
        cache[hook.name] = tensor.detach()

    names = resolve_names(model.hook_dict, names_filter)
    with attach_hooks(model.hook_dict, [(name, save) for name in names]):
        output = model(*args, **kwargs)
    return output, cache
