"""The computational graph the circuit finder works on, and one forward pass over it.

The graph (Elhage et al. 2021's residual-stream view, as ACDC and EAP use it). Every
component *writes* into the residual stream, and every later component *reads* the sum
of what was written before it, so each (writer, reader) pair is an edge:

    senders    embed, pos (when positions are added), each head L{l}H{h}, each MLP{l}
    receivers  each head's query, key and value input (L{l}H{h}.q / .k / .v), each MLP{l},
               and the logits

A head of layer l reads every sender of layers < l; MLP l also reads layer l's heads; the
logits read everything. The receivers are separate tensors thanks to TransformerLens's
split hook points (``blocks.{i}.hook_q_input`` / ``k_input`` / ``v_input``,
``hook_mlp_in``) and the senders thanks to ``attn.hook_result`` (see gptdecoder/hooks.py).
``GraphRun`` is the hooks of one pass: it records every sender's output and can give any
receiver a sender's output from another run instead (patching an edge).
"""
from __future__ import annotations

import contextlib
from dataclasses import dataclass, field
from typing import Callable, Iterator, Optional, Sequence

import torch

from gptdecoder.lab.ablation import HeldOut
from gptdecoder.model import GPT

@dataclass(frozen=True)
class Graph:
    """The nodes and allowed edges of a model: ``allowed[s, r]`` is True when sender s is
    written before receiver r reads (an edge). Names as in the module docstring."""

    n_layer: int
    n_head: int
    senders: tuple[str, ...]
    receivers: tuple[str, ...]
    allowed: torch.Tensor = field(compare=False)  # (S, R) bool (the names decide equality)

    @property
    def n_edges(self) -> int:
        return int(self.allowed.sum())

    def edges(self) -> list[tuple[str, str]]:
        """Every edge as (sender, receiver), in sender-major order."""
        return [(self.senders[s], self.receivers[r]) for s, r in self.allowed.nonzero().tolist()]

    def edge_index(self, sender: str, receiver: str) -> tuple[int, int]:
        if sender not in self.senders or receiver not in self.receivers:
            raise ValueError(f"no edge {sender} -> {receiver}: senders are {', '.join(self.senders)}; receivers are "
                             f"each head's .q/.k/.v, each MLP and logits")
        s, r = self.senders.index(sender), self.receivers.index(receiver)
        if not self.allowed[s, r]:
            raise ValueError(f"no edge {sender} -> {receiver}: the sender is not written before the receiver reads")
        return s, r

    def mask(self, edges: Sequence[tuple[str, str]]) -> torch.Tensor:
        """(S, R) bool: True on the given edges."""
        out = torch.zeros_like(self.allowed)
        for sender, receiver in edges:
            out[self.edge_index(sender, receiver)] = True
        return out

    def head_receivers(self, layer: int, kind: str) -> list[int]:
        """The receiver indices of layer ``layer``'s heads' ``kind`` ("q", "k" or "v") inputs, by head."""
        return [self.receivers.index(f"L{layer}H{h}.{kind}") for h in range(self.n_head)]


def sender_stage(name: str) -> int:
    """Where a sender writes: 0 for the inputs, 2l+1 for layer l's heads, 2l+2 for MLP l."""
    if name in ("embed", "pos"):
        return 0
    if name.startswith("MLP"):
        return 2 * int(name[3:]) + 2
    return 2 * int(name[1 : name.index("H")]) + 1


def receiver_stage(name: str, n_layer: int) -> int:
    """Where a receiver reads: 2l+1 for layer l's head inputs, 2l+2 for MLP l, then the logits."""
    if name == "logits":
        return 2 * n_layer + 1
    return sender_stage(name.split(".")[0])


def graph_of(model: GPT) -> Graph:
    """The graph of ``model`` (any GPT: the position input exists when positions are added)."""
    L, H = model.config.n_layer, model.config.n_head
    senders = ["embed"] + (["pos"] if "hook_pos_embed" in model.hook_dict else [])
    receivers: list[str] = []
    for layer in range(L):
        senders += [f"L{layer}H{h}" for h in range(H)] + [f"MLP{layer}"]
        receivers += [f"L{layer}H{h}.{kind}" for kind in "qkv" for h in range(H)] + [f"MLP{layer}"]
    receivers.append("logits")
    s_stage = torch.tensor([sender_stage(s) for s in senders])
    r_stage = torch.tensor([receiver_stage(r, L) for r in receivers])
    return Graph(L, H, tuple(senders), tuple(receivers), s_stage[:, None] < r_stage[None, :])


@contextlib.contextmanager
def split_heads(model: GPT) -> Iterator[None]:
    """Each head's q/k/v inputs and output as tensors of their own, for the with-block."""
    before = (model.blocks[0].split_qkv_input, model.blocks[0].attn.use_attn_result)
    model.set_use_split_qkv_input(True)
    model.set_use_attn_result(True)
    try:
        yield
    finally:
        model.set_use_split_qkv_input(before[0])
        model.set_use_attn_result(before[1])


class GraphRun:
    """The hooks of one forward pass over the graph.

    Records every sender's output (``outputs``, in sender order, each (B, T, C)). Given
    ``corrupted`` outputs (S, B, T, C) and ``patched`` (S, R) weights, each receiver reads
    its input plus sum_s patched[s, r] * (corrupted[s] - outputs[s]): 1 replaces edge
    (s, r) by its corrupted value, 0 leaves it clean. With ``tap`` each receiver's input
    becomes a tensor of its own, kept in ``taps`` as (receiver indices, tensor) for autograd.
    ``inputs`` (a function of the sender index and the tensor) may replace the embeddings.
    """

    def __init__(self, graph: Graph, corrupted: Optional[torch.Tensor] = None,
                 patched: Optional[torch.Tensor] = None, tap: bool = False,
                 inputs: Optional[Callable[[int, torch.Tensor], torch.Tensor]] = None) -> None:
        self.graph, self.corrupted, self.patched, self.tap, self.inputs = graph, corrupted, patched, tap, inputs
        self.outputs: list[torch.Tensor] = []
        self.taps: list[tuple[list[int], torch.Tensor]] = []
        # corrupted - current output of each sender, written once as the sender fires (not per receiver)
        self.delta = torch.empty_like(corrupted) if patched is not None else None

    def hooks(self) -> list[tuple[str, Callable]]:
        g = self.graph
        hooks: list[tuple[str, Callable]] = [("hook_embed", self.sender)]
        if "pos" in g.senders:
            hooks.append(("hook_pos_embed", self.sender))
        for layer in range(g.n_layer):
            for kind in "qkv":
                hooks.append((f"blocks.{layer}.hook_{kind}_input", self.receiver(g.head_receivers(layer, kind))))
            hooks.append((f"blocks.{layer}.attn.hook_result", self.sender))
            hooks.append((f"blocks.{layer}.hook_mlp_in", self.receiver([g.receivers.index(f"MLP{layer}")])))
            hooks.append((f"blocks.{layer}.hook_mlp_out", self.sender))
        hooks.append((f"blocks.{g.n_layer - 1}.hook_resid_post", self.receiver([len(g.receivers) - 1])))
        return hooks

    def sender(self, x: torch.Tensor, hook) -> Optional[torch.Tensor]:
        first = len(self.outputs)
        if x.dim() == 4:  # hook_result (B, T, nh, C): one sender per head
            self.outputs.extend(x.unbind(2))
            written, x_out = x.movedim(2, 0), None  # (nh, B, T, C)
        else:
            if self.inputs is not None:
                x = self.inputs(first, x)
            self.outputs.append(x)
            written, x_out = x[None], x
        if self.delta is not None:
            self.delta[first : len(self.outputs)] = self.corrupted[first : len(self.outputs)] - written
        return x_out

    def receiver(self, indices: list[int]) -> Callable:
        def read(x: torch.Tensor, hook) -> torch.Tensor:
            if self.patched is not None:
                n = len(self.outputs)  # the senders written so far: exactly the ones this receiver reads
                delta = self.delta[:n]  # (n, B, T, C)
                weights = self.patched[:n][:, indices].to(delta.dtype)  # (n, len(indices))
                if x.dim() == 4:  # one copy per head
                    x = x + torch.einsum("sbtc,sn->btnc", delta, weights)
                else:
                    x = x + torch.einsum("sbtc,s->btc", delta, weights[:, 0])
            if self.tap:  # a tensor of its own: its gradient is this receiver's alone
                # (still on the graph, so earlier receivers' gradients flow through it; a model
                # whose parameters need no gradient gets one started here)
                x = x.clone() if x.requires_grad else x.detach().clone().requires_grad_(True)
                self.taps.append((indices, x))
            return x
        return read


def run_graph(model: GPT, data: HeldOut, run: GraphRun) -> torch.Tensor:
    """The logits of ``model`` on ``data`` with ``run``'s hooks (heads split for the call)."""
    with split_heads(model), model.hooks(run.hooks()):
        logits, _ = model(data.x, position_ids=data.pos)
    return logits

