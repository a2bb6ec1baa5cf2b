"""How the residual stream is normalised before attention, the MLP and the LM head.

The pieces model.py builds its blocks from, one table of names (``NORMS``) and one place
that chooses (``make_norm``), as positions.py does for positions:

    layernorm  GPT-2's, with TransformerLens's hook points on its scale and normalised input
    none       nothing (the identity): compiled programs are written without normalisation

``RMSNorm`` is the per-head q/k normalisation of ``model.qk_norm``.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from gptdecoder.hooks import HookPoint

NORMS = ("layernorm", "none")


class RMSNorm(nn.RMSNorm):
    """nn.RMSNorm computed in its input's dtype. Under bf16 autocast the input is bf16 while
    the gain stays fp32; torch's fused kernel needs both alike, so the gain is cast."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.rms_norm(x, self.normalized_shape, self.weight.to(x.dtype), self.eps)


class LayerNorm(nn.LayerNorm):
    """nn.LayerNorm with TransformerLens's hook points on the normalisation itself.

    ``hook_scale`` (B, T, 1) is sqrt(var + eps) of each position's input and
    ``hook_normalized`` (B, T, C) is (x - mean) / scale, before the weight and bias: the
    one non-linear step of a LayerNorm, which direct logit attribution divides by. Two
    paths compute the same thing, as in attention: the fused F.layer_norm when no hook
    watches either point, else the explicit normalisation that shows them.
    """

    def __init__(self, d_model: int, bias: bool) -> None:
        super().__init__(d_model, bias=bias)
        self.hook_scale, self.hook_normalized = HookPoint(), HookPoint()

    def explicit_path(self) -> bool:
        """True when a hook watches hook_scale or hook_normalized."""
        return self.hook_scale.is_watched() or self.hook_normalized.is_watched()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.explicit_path():
            return super().forward(x)  # F.layer_norm
        centered = x - x.mean(dim=-1, keepdim=True)  # (B, T, C)
        scale = self.hook_scale((centered.pow(2).mean(dim=-1, keepdim=True) + self.eps).sqrt())  # (B, T, 1)
        normalized = self.hook_normalized(centered / scale)  # (B, T, C)
        out = normalized * self.weight
        return out if self.bias is None else out + self.bias


def make_norm(kind: str, d_model: int, bias: bool) -> nn.Module:
    """The normalisation ``kind`` names (one of NORMS) for a residual stream of d_model."""
    if kind == "none":
        return nn.Identity()
    return LayerNorm(d_model, bias=bias)
