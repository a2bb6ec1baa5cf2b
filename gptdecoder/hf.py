"""Hugging Face GPT-2 interop without network: load a local checkpoint, save one.

The architectures are the same; only names and one layout differ. HF's GPT-2 stores
its linear layers as ``Conv1D`` with weight shape (in, out), the transpose of
nn.Linear's (out, in), so c_attn / c_proj / c_fc weights are transposed both ways.

=================================  ================================
HF GPT2LMHeadModel                 gptdecoder GPT
=================================  ================================
transformer.wte / wpe              wte / wpe
transformer.h.{i}.ln_1 / ln_2      blocks.{i}.ln_1 / ln_2
transformer.h.{i}.attn.c_attn      blocks.{i}.attn.c_attn  (W^T)
transformer.h.{i}.attn.c_proj      blocks.{i}.attn.c_proj  (W^T)
transformer.h.{i}.mlp.c_fc/c_proj  blocks.{i}.mlp.c_fc/c_proj (W^T)
transformer.ln_f                   ln_final
lm_head (tied to wte)              lm_head (tied to wte)
=================================  ================================

Reading needs only ``safetensors`` (or torch for pytorch_model.bin), not transformers.
HF's GPT-2 has no switch to drop biases, so a ``bias=False`` model is saved with zero
biases (the same function) plus a ``gptdecoder_bias: false`` entry in config.json
that our loader uses to rebuild the bias-free model; transformers ignores that key.
"""
from __future__ import annotations

import dataclasses
import json
import os
import shutil
import uuid
from pathlib import Path
from typing import Optional, Union

import torch
from torch import nn

from gptdecoder.config import build_section, validate_model
from gptdecoder.errors import UserError
from gptdecoder.storage import load_weights_only
from gptdecoder.model import GPT, GPTConfig

PathLike = Union[str, os.PathLike]

# the Linear layers that HF stores transposed (Conv1D), by our parameter-name suffix
_CONV1D = ("attn.c_attn.weight", "attn.c_proj.weight", "mlp.c_fc.weight", "mlp.c_proj.weight")
# HF activation_function names -> our GPTConfig.activation
_ACTIVATIONS = {"gelu_new": "gelu_tanh", "gelu_pytorch_tanh": "gelu_tanh", "gelu": "gelu"}
_LAYER_NORM_EPS = 1e-5  # nn.LayerNorm's default, which our model uses


def config_from_hf(hf: dict) -> GPTConfig:
    """GPTConfig from a HF GPT-2 config.json dict; UserError for what we cannot represent."""
    if hf.get("model_type", "gpt2") != "gpt2":
        raise UserError(f"model_type={hf.get('model_type')!r}: only GPT-2 checkpoints (model_type 'gpt2') load")
    act = hf.get("activation_function", "gelu_new")
    if not isinstance(act, str) or act not in _ACTIVATIONS:
        raise UserError(f"activation_function={act!r} is not supported: expected one of {', '.join(_ACTIVATIONS)}")
    eps = hf.get("layer_norm_epsilon", 1e-5)
    if not isinstance(eps, (int, float)) or abs(eps - _LAYER_NORM_EPS) > 1e-12:
        raise UserError(f"layer_norm_epsilon={eps} is not supported: the model's LayerNorm uses {_LAYER_NORM_EPS}")
    unsupported = {  # key: the only value we implement
        "scale_attn_weights": True,
        "scale_attn_by_inverse_layer_idx": False,
        "add_cross_attention": False,
    }
    for key, expected in unsupported.items():
        if hf.get(key, expected) != expected:
            raise UserError(f"{key}={hf[key]!r} is not supported (only {expected!r})")
    try:  # each value type-checked by the config schema (strict: "16" is not 16, "false" not False)
        sizes = build_section(GPTConfig, {"d_model": hf.get("n_embd", 768), "n_layer": hf.get("n_layer", 12),
                                          "n_head": hf.get("n_head", 12), "vocab_size": hf.get("vocab_size", 50257),
                                          "block_size": hf.get("n_positions", 1024)}, "config.json")
        if sizes.vocab_size is None or sizes.block_size is None:
            raise UserError("vocab_size and n_positions must be numbers, not null")
        d_model = sizes.d_model
        n_inner = build_section(GPTConfig, {"mlp_ratio": hf.get("n_inner") or 4 * d_model}, "n_inner").mlp_ratio
        multiple = n_inner % d_model == 0  # else the hidden size is given as it is (model.mlp_hidden)
        dropouts = [build_section(GPTConfig, {"dropout": hf.get(k, 0.1)}, k).dropout
                    for k in ("resid_pdrop", "embd_pdrop", "attn_pdrop")]
        flags = build_section(GPTConfig, {"bias": hf.get("gptdecoder_bias", True),
                                          "tie_weights": hf.get("tie_word_embeddings", True)}, "config.json")
        config = dataclasses.replace(sizes, mlp_ratio=n_inner // d_model if multiple else 4,
                                     mlp_hidden=None if multiple else n_inner, bias=flags.bias, tie_weights=flags.tie_weights,
                                     dropout=max(dropouts),  # one rate in our model; HF's three are usually equal
                                     activation=_ACTIVATIONS[act])
        validate_model(config)
    except UserError as e:
        raise UserError(f"config.json describes a model we cannot build: {e}") from None
    return config


def config_to_hf(config: GPTConfig, eos_token_id: Optional[int] = None) -> dict:
    """config.json contents that transformers reads as a GPT2LMHeadModel."""
    hf = {
        "architectures": ["GPT2LMHeadModel"],
        "model_type": "gpt2",
        "vocab_size": config.vocab_size,
        "n_positions": config.n_positions,  # block_size, or the random_positions range
        "n_ctx": config.n_positions,
        "n_embd": config.d_model,
        "n_layer": config.n_layer,
        "n_head": config.n_head,
        "n_inner": config.d_mlp,
        "activation_function": "gelu_new" if config.activation == "gelu_tanh" else "gelu",
        "resid_pdrop": config.dropout,
        "embd_pdrop": config.dropout,
        "attn_pdrop": config.dropout,
        "layer_norm_epsilon": _LAYER_NORM_EPS,
        "initializer_range": 0.02,
        "scale_attn_weights": True,
        "scale_attn_by_inverse_layer_idx": False,
        "reorder_and_upcast_attn": False,
        "tie_word_embeddings": config.tie_weights,
        "bos_token_id": eos_token_id,
        "eos_token_id": eos_token_id,
        "torch_dtype": "float32",
    }
    if not config.bias:
        hf["gptdecoder_bias"] = False
    return hf


def _read_hf_weights(directory: Path) -> dict[str, torch.Tensor]:
    """All tensors of a checkpoint directory: model.safetensors (also sharded) or pytorch_model.bin.

    pytorch_model.bin is a pickle: it is read with ``weights_only=True`` (tensors and plain
    values only), so a file that would need arbitrary unpickling is refused, unrun.
    """
    single, index = directory / "model.safetensors", directory / "model.safetensors.index.json"
    if single.exists() or index.exists():
        from safetensors.torch import load_file

        try:
            if single.exists():
                return load_file(str(single))
            shards = sorted(set(json.loads(index.read_text())["weight_map"].values()))
            state: dict[str, torch.Tensor] = {}
            for shard in shards:
                state.update(load_file(str(directory / shard)))
            return state
        except Exception as e:  # a truncated file, a broken index: one line, not safetensors' traceback
            reason = f"{type(e).__name__}: " + " ".join(str(e).split())[:200]
            raise UserError(f"{directory}: cannot read the safetensors weights ({reason})") from None
    if (directory / "pytorch_model.bin").exists():

        state = load_weights_only(directory / "pytorch_model.bin")
        if not isinstance(state, dict) or not all(isinstance(t, torch.Tensor) for t in state.values()):
            raise UserError(f"{directory}: pytorch_model.bin is not a state dict of tensors")
        return state
    raise UserError(f"{directory}: no model.safetensors or pytorch_model.bin found")


def _hf_name(name: str) -> str:
    """Our parameter name -> HF's: blocks.0.attn.c_attn.weight -> transformer.h.0.attn.c_attn.weight."""
    if name == "lm_head.weight":
        return name
    if name.startswith("blocks."):
        name = "h." + name.removeprefix("blocks.")
    elif name.startswith("ln_final."):
        name = "ln_f." + name.removeprefix("ln_final.")
    return "transformer." + name


def _our_name(hf_name: str) -> str:
    """HF's parameter name -> ours (GPT2Model checkpoints lack the 'transformer.' prefix)."""
    name = hf_name.removeprefix("transformer.")
    if name.startswith("h."):
        return "blocks." + name.removeprefix("h.")
    if name.startswith("ln_f."):
        return "ln_final." + name.removeprefix("ln_f.")
    return name


def from_pretrained(directory: PathLike) -> GPT:
    """A GPT with the weights of a local HF GPT-2 checkpoint directory (config.json + weights)."""
    directory = Path(directory)
    config_path = directory / "config.json"
    if not config_path.exists():
        raise UserError(f"{directory}: no config.json; expected a Hugging Face GPT-2 checkpoint directory")
    try:
        hf_config = json.loads(config_path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise UserError(f"{config_path}: cannot read it as JSON ({e})") from None
    if not isinstance(hf_config, dict):
        raise UserError(f"{config_path}: expected a JSON object (a model config), got {type(hf_config).__name__}")
    config = config_from_hf(hf_config)
    hf_state = _read_hf_weights(directory)

    state = {}
    for hf_name, tensor in hf_state.items():
        if hf_name.endswith((".attn.bias", ".attn.masked_bias")):
            continue  # causal-mask buffers that old HF versions saved; not parameters
        name = _our_name(hf_name)
        state[name] = tensor.t() if name.endswith(_CONV1D) else tensor
    if config.tie_weights:
        state.pop("lm_head.weight", None)  # the same tensor as wte.weight

    model = GPT(config)
    expected = {name for name in model.state_dict() if not (config.tie_weights and name == "lm_head.weight")}
    if not config.bias:  # saved as zero biases; drop them (they must really be zero)
        for name in [n for n in state if n.endswith(".bias") and n not in expected]:
            if torch.count_nonzero(state.pop(name)):
                raise UserError(f"{directory}: config says gptdecoder_bias=false but {name} is not zero")
    missing, unexpected = sorted(expected - set(state)), sorted(set(state) - expected)
    if missing or unexpected:
        raise UserError(f"{directory}: weights do not match the config: missing {missing[:5]}, unexpected {unexpected[:5]}")
    for name, tensor in state.items():
        if tensor.shape != model.state_dict()[name].shape:
            raise UserError(f"{directory}: {name} has shape {tuple(tensor.shape)}, config implies {tuple(model.state_dict()[name].shape)}")
    model.load_state_dict(state, strict=False)  # strict=False only for the tied lm_head, checked above
    return model


def save_pretrained(model: GPT, directory: PathLike, eos_token_id: Optional[int] = None) -> Path:
    """Write ``directory`` as a HF GPT-2 checkpoint (config.json + model.safetensors).

    ``transformers.AutoModelForCausalLM.from_pretrained(directory)`` loads it as a
    GPT2LMHeadModel with the same logits. Written to a temporary directory next to the
    target and renamed into place, so a crash never leaves a half-written checkpoint.
    An existing checkpoint directory (one with config.json) is replaced.
    """
    from safetensors.torch import save_file

    different = model.config.differences_from_gpt2()
    if different:
        raise UserError(f"cannot save as Hugging Face GPT-2: this model is not GPT-2 ({', '.join(f'model.{d}' for d in different)}), "
                        "and GPT2LMHeadModel would compute something else with its weights")
    directory = Path(directory)
    if directory.exists() and (not directory.is_dir() or (any(directory.iterdir()) and not (directory / "config.json").exists())):
        raise UserError(f"{directory} exists and is not a checkpoint directory; refusing to overwrite it")
    config = model.config
    state = dict(model.state_dict())
    if config.tie_weights:
        del state["lm_head.weight"]  # tied: HF re-creates it from transformer.wte.weight
    if not config.bias:  # HF's GPT-2 always has biases; zero ones compute the same function
        for name, module in model.named_modules():
            if isinstance(module, (nn.Linear, nn.LayerNorm)) and module.bias is None and name != "lm_head":
                state[f"{name}.bias"] = torch.zeros(module.weight.shape[0])
    tensors = {}
    for name, tensor in state.items():
        tensor = tensor.t() if name.endswith(_CONV1D) else tensor
        tensors[_hf_name(name)] = tensor.detach().to("cpu", torch.float32).contiguous()

    directory.parent.mkdir(parents=True, exist_ok=True)
    tmp = directory.with_name(f".{directory.name}.tmp-{os.getpid()}-{uuid.uuid4().hex[:8]}")
    tmp.mkdir()  # an ordinary directory (the umask's permissions), unlike mkdtemp's private one
    try:
        save_file(tensors, str(tmp / "model.safetensors"), metadata={"format": "pt"})
        (tmp / "config.json").write_text(json.dumps(config_to_hf(config, eos_token_id), indent=2) + "\n")
        if directory.exists():  # swap: old aside, new in, old deleted
            old = directory.with_name(f".{directory.name}.old-{os.getpid()}")
            os.rename(directory, old)
            os.rename(tmp, directory)
            shutil.rmtree(old)
        else:
            os.rename(tmp, directory)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return directory
