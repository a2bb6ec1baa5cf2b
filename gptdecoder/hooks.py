"""Hook points: named places in the model where a tensor can be read or replaced.

The names follow TransformerLens (TL), so code written for it reads the same here.
Every hook point is an identity layer that, when hooks are attached, calls each
``fn(tensor, hook)`` in turn; a hook that returns a tensor replaces the activation.

The one table of hook point names, shapes and meanings (B = batch, T = positions,
nh = heads, hs = d_head, d = d_model). "TL" marks TransformerLens's own name with its
meaning; the others are this project's. "also X" is an alias (X after ``blocks.{i}.``).

================================  ===================  ==  ======================================================
name                              shape                TL  what
================================  ===================  ==  ======================================================
hook_embed                        [B, T, d]            TL  token embeddings
hook_pos_embed                    [B, T, d]            TL  position embeddings (a view expanded over B: return a new tensor, do not edit it in place);
                                                           pos_encoding learned only
blocks.{i}.hook_resid_pre         [B, T, d]            TL  residual stream into block i
blocks.{i}.hook_q_input           [B, T, nh, d]        TL  the residual stream copied once per head for its queries, before
                                                           ln_1 (each copy normalised on its own); only after
                                                           model.set_use_split_qkv_input(True)
blocks.{i}.hook_k_input           [B, T, nh, d]        TL  the same for each head's keys
blocks.{i}.hook_v_input           [B, T, nh, d]        TL  the same for each head's values
blocks.{i}.ln1.hook_scale         [B, T, 1]            TL  sqrt(var + eps) of ln_1's input; also ln_1.hook_scale
                                                           ([B, T, nh, 1] with split q/k/v inputs, as ln1.hook_normalized)
blocks.{i}.ln1.hook_normalized    [B, T, d]            TL  (x - mean) / scale, before ln_1's weight and bias;
                                                           also ln_1.hook_normalized
blocks.{i}.attn.hook_q/k/v        [B, T, nh, hs]       TL  queries / keys / values
blocks.{i}.attn.hook_rot_q        [B, T, nh, hs]       TL  queries after the rotation (pos_encoding rope only; after qk_norm)
blocks.{i}.attn.hook_rot_k        [B, T, nh, hs]       TL  keys after the rotation (pos_encoding rope only; after qk_norm)
blocks.{i}.attn.hook_scores       [B, nh, T_q, T_k]        Q.K^T / sqrt(hs) (plus ALiBi's distance penalty), before the
                                                           causal mask
blocks.{i}.attn.hook_attn_scores  [B, nh, T_q, T_k]    TL  the scores after the mask: -inf above the diagonal;
                                                           also attn.hook_masked_scores (this project's old name)
blocks.{i}.attn.hook_pattern      [B, nh, T_q, T_k]    TL  softmax: the attention pattern
blocks.{i}.attn.hook_z            [B, T, nh, hs]       TL  pattern @ V, per head
blocks.{i}.attn.hook_result       [B, T, nh, d]        TL  each head's output, z_h @ W_O[h] (c_proj's bias not included:
                                                           no head owns it); only after model.set_use_attn_result(True)
blocks.{i}.hook_attn_out          [B, T, d]            TL  attention output (after c_proj, its bias included)
blocks.{i}.hook_resid_mid         [B, T, d]            TL  residual after attention
blocks.{i}.hook_mlp_in            [B, T, d]            TL  the MLP's own copy of the residual stream (before ln_2): its
                                                           gradient is the MLP's alone, not the residual path's
blocks.{i}.ln2.hook_scale         [B, T, 1]            TL  sqrt(var + eps) of ln_2's input; also ln_2.hook_scale
blocks.{i}.ln2.hook_normalized    [B, T, d]            TL  (x - mean) / scale, before ln_2's weight and bias;
                                                           also ln_2.hook_normalized
blocks.{i}.mlp.hook_pre           [B, T, d_mlp]        TL  MLP hidden (d_mlp = mlp_hidden or mlp_ratio * d), before the activation
blocks.{i}.mlp.hook_post          [B, T, d_mlp]        TL  MLP hidden, after the activation
blocks.{i}.hook_mlp_out           [B, T, d]            TL  MLP output
blocks.{i}.hook_resid_post        [B, T, d]            TL  residual stream out of block i
ln_final.hook_scale               [B, T, 1]            TL  sqrt(var + eps) of the final LayerNorm's input
ln_final.hook_normalized          [B, T, d]            TL  (x - mean) / scale, before ln_final's weight and bias
================================  ===================  ==  ======================================================

With ``norm: none`` there is no LayerNorm and so none of the ln1/ln2/ln_final points.
The LayerNorm modules keep GPT-2's names ``ln_1`` / ``ln_2`` (state-dict keys,
gptdecoder/hf.py, gptdecoder/nanogpt.py); their hook points take TL's ``ln1`` / ``ln2``
names, and the module paths are aliases. ``hook_normalized`` is TL's ``LayerNormPre``
meaning (the default for TL's pretrained models, whose LayerNorm weights are folded
into the next layer): centred and divided by ``hook_scale``, with no weight or bias.
TL's unfolded ``LayerNorm`` puts the point after its weight and bias instead; here
``hook_normalized * ln.weight + ln.bias`` is the LayerNorm's output.

An alias works wherever a name does: ``model.hooks``, ``run_with_cache``'s
``names_filter`` (a list, a regex or a callable matches a point by its name or any
alias), ``model.hook_dict[...]`` and ``cache[...]``. Caches and ``hook.name`` use the
name in the table. ``ALIASES`` below holds them.

The split points (``hook_q_input``, ``hook_k_input``, ``hook_v_input``, ``hook_result``,
``hook_mlp_in``) are what the circuit finder (gptdecoder/lab/circuit_graph.py) patches: each
edge of the computational graph -- one head's output into another head's query, key or
value input, into an MLP, or into the logits -- becomes a tensor of its own. As in
TransformerLens, the first four are off until switched on (they cost work).

What watching costs: capturing ``hook_scores``, ``hook_attn_scores`` or ``hook_pattern``
switches that layer's attention to the explicit path (it must materialise the
matrices), and a LayerNorm's ``hook_scale`` / ``hook_normalized`` switch that LayerNorm
from the fused F.layer_norm to the explicit normalisation. Unwatched, every hook point
leaves the fused paths in place.

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

# Other spellings of a hook point name -> the name in the table ({i}: any layer number).
ALIASES: dict[str, str] = {
    # the LayerNorms' module paths (GPT-2's ln_1 / ln_2) -> TransformerLens's ln1 / ln2
    "blocks.{i}.ln_1.hook_scale": "blocks.{i}.ln1.hook_scale",
    "blocks.{i}.ln_1.hook_normalized": "blocks.{i}.ln1.hook_normalized",
    "blocks.{i}.ln_2.hook_scale": "blocks.{i}.ln2.hook_scale",
    "blocks.{i}.ln_2.hook_normalized": "blocks.{i}.ln2.hook_normalized",
    # this project's name before it took TransformerLens's (older notebooks use it)
    "blocks.{i}.attn.hook_masked_scores": "blocks.{i}.attn.hook_attn_scores",
}


def _generic(name: str) -> tuple[str, str]:
    """("blocks.{i}.rest", "3") for "blocks.3.rest"; (name, "") for a name outside the blocks."""
    m = re.match(r"blocks\.(\d+)\.", name)
    return ("blocks.{i}." + name[m.end():], m.group(1)) if m else (name, "")


def canonical_name(name: str) -> str:
    """The name in the table for ``name`` or any of its aliases (an unknown name comes back as is)."""
    generic, layer = _generic(name)
    return ALIASES[generic].replace("{i}", layer) if generic in ALIASES else name


def aliases(name: str) -> list[str]:
    """The other spellings of a name from the table, e.g. its module path."""
    generic, layer = _generic(name)
    return [alias.replace("{i}", layer) for alias, target in ALIASES.items() if target == generic]


class HookDict(dict):
    """A dict keyed by hook point names that also answers to their aliases.

    Iterating it gives the names in the table only (each point once); looking up,
    ``in`` and ``get`` accept an alias too. ``model.hook_dict`` and the caches of
    ``run_with_cache`` are HookDicts, so ``cache["blocks.0.attn.hook_masked_scores"]``
    finds what was stored under ``blocks.0.attn.hook_attn_scores``.
    """

    def __getitem__(self, name: str):
        return super().__getitem__(canonical_name(name))

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and super().__contains__(canonical_name(name))

    def get(self, name: str, default=None):
        return super().get(canonical_name(name), default)


class HookPoint(nn.Module):
    """An identity layer with a name: the place where one tensor can be read or replaced.

    Hooks are plain functions ``fn(tensor, hook) -> tensor or None`` kept in ``self.fns``
    and run in order by ``forward``; ``model.hooks(...)`` attaches and detaches them.
    It is an ordinary nn.Module, so PyTorch's own ``register_forward_hook`` works on it
    too. Attention and LayerNorm take their explicit (slower) paths only when someone is
    looking (see ``CausalSelfAttention.explicit_path``), which is why a hook point says
    whether it is watched.
    """

    def __init__(self) -> None:
        super().__init__()
        self.name: str = ""  # filled in by the owning model: its name in the table
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


def name_hook_points(model: nn.Module) -> HookDict:
    """Name every HookPoint (its module path, or the table's name when the path is an
    alias, e.g. blocks.0.ln_1.hook_scale -> blocks.0.ln1.hook_scale); return {name: point}."""
    points = HookDict()
    for path, module in model.named_modules():
        if isinstance(module, HookPoint):
            module.name = canonical_name(path)
            points[module.name] = module
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
    wanted = {canonical_name(name) for name in names_filter}
    return lambda name: name in wanted


def resolve_names(hook_dict: dict[str, HookPoint], names_filter: NamesFilter) -> list[str]:
    """The hook point names that a filter selects, in model order. A point is selected
    when the filter accepts its name or one of its aliases."""
    keep = _as_predicate(names_filter)
    names = [name for name in hook_dict if keep(name) or any(keep(alias) for alias in aliases(name))]
    if isinstance(names_filter, (list, tuple, set)):
        unknown = sorted(name for name in names_filter if canonical_name(name) not in hook_dict)
        if unknown:
            raise KeyError(f"unknown hook point(s) {unknown}; see the table in gptdecoder/hooks.py")
    return names


@contextlib.contextmanager
def attach_hooks(hook_dict: dict[str, HookPoint], fwd_hooks: Iterable[tuple[str, HookFn]]) -> Iterator[None]:
    """Attach ``(name, fn)`` hooks for the duration of a with-block; always detached after.

    ``name`` may be an alias, or a callable ``name -> bool`` selecting several hook points.
    """
    attached: list[tuple[HookPoint, HookFn]] = []
    try:
        for name, fn in fwd_hooks:
            if callable(name):
                targets = [hook_dict[n] for n in resolve_names(hook_dict, name)]
            elif canonical_name(name) in hook_dict:
                targets = [hook_dict[canonical_name(name)]]
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

    ``cache`` maps hook point names (the table's; aliases find them too) to detached
    activations; only the names selected by ``names_filter`` are kept, so capturing one
    pattern does not store everything.
    """
    cache = HookDict()

    def save(tensor: torch.Tensor, hook: HookPoint) -> None:
        cache[hook.name] = tensor.detach()

    names = resolve_names(model.hook_dict, names_filter)
    with attach_hooks(model.hook_dict, [(name, save) for name in names]):
        output = model(*args, **kwargs)
    return output, cache
