"""``python -m gptdecoder export --run DIR --hf OUT``: a run as a Hugging Face directory.

The model goes through ``gptdecoder.hf.save_pretrained`` (config.json + model.safetensors, see
gptdecoder/hf.py). The tokenizer goes beside it so that, offline,

    AutoModelForCausalLM.from_pretrained(OUT) and AutoTokenizer.from_pretrained(OUT)

give back the same tokens and the same greedy text as ``python -m gptdecoder generate``:

* BPE runs (gpt2 or a learned vocabulary): our encoder.json / vocab.bpe are GPT-2's own
  file formats, so they are copied as vocab.json / merges.txt for GPT2Tokenizer;
* char runs: a ``tokenizers`` WordLevel model whose pre-tokenizer splits every
  character off (``[\\s\\S]`` also matches newlines) and whose Fuse decoder glues them
  back together, saved as tokenizer.json for PreTrainedTokenizerFast;
* task runs: the same WordLevel model over the task's symbols, split on whitespace
  ("2 1 0" -> three tokens) and decoded with spaces.

Char and task exports carry an unknown token, ``<unk>``, one id past the model's
vocabulary, so any text encodes (see ``with_unknown_token``).

``--push REPO`` uploads the directory with huggingface_hub; it needs a token in
HF_TOKEN (never asked for, never required otherwise).
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import os
import shutil
from pathlib import Path
from typing import Optional

import torch

from gptdecoder import hf
from gptdecoder.data.tokenizers import TOKENIZER_DIR, BPETokenizer, CharTokenizer, Tokenizer, load_tokenizer
from gptdecoder.errors import UserError
from gptdecoder.model import GPT
from gptdecoder.runs import load_run

TOKEN_ENV_VARS = ("HF_TOKEN", "HUGGING_FACE_HUB_TOKEN")
ENDOFTEXT = "<|endoftext|>"
UNK = "<unk>"  # the unknown token of task and char exports


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--run", dest="run_dir", required=True, metavar="DIR", help="run directory (holds ckpt.pt)")
    parser.add_argument("--hf", required=True, metavar="OUT", help="directory to write (replaced if it is an export)")
    parser.add_argument("--push", metavar="REPO", help="also upload to the Hugging Face Hub as REPO (needs HF_TOKEN)")


def hub_token() -> Optional[str]:
    return next((os.environ[v] for v in TOKEN_ENV_VARS if os.environ.get(v)), None)


def export_run(run_dir: Path, out: Path) -> Path:
    """Write model + tokenizer of ``run_dir`` to ``out``; returns ``out``."""
    run = load_run(run_dir, "cpu")
    block_size = run.model.config.block_size
    tokenizer: Optional[Tokenizer] = None
    if run.task is None:
        tokenizer = load_tokenizer(run_dir / TOKENIZER_DIR)
    if isinstance(tokenizer, BPETokenizer):  # byte-level: every text has a spelling, no unknown token needed
        hf.save_pretrained(run.model, out, eos_token_id=tokenizer.eot_token)  # replaces out: tokenizer files after
        write_gpt2_tokenizer(tokenizer, out, block_size)
        return out
    vocab = dict(tokenizer.stoi) if isinstance(tokenizer, CharTokenizer) else {s: i for i, s in enumerate(run.task.symbols)}
    hf.save_pretrained(with_unknown_token(run.model), out)
    unk = vocab[UNK] = run.model.config.vocab_size
    write_json(out / "generation_config.json", {"suppress_tokens": [unk]})  # never generate <unk>
    if isinstance(tokenizer, CharTokenizer):
        write_word_level_tokenizer(vocab, out, block_size, split=r"[\s\S]", glue="")
    else:
        write_word_level_tokenizer(vocab, out, block_size, split=None, glue=" ")
    return out


def with_unknown_token(model: GPT) -> GPT:
    """A copy of ``model`` with one more token id, UNK, at the end of the vocabulary.

    A word-level tokenizer needs an id for text its vocabulary cannot spell (another
    tool's prompt, a character the corpus never had). Its embedding row is zero, and
    generation_config.json suppresses it, so the known tokens' logits -- and so every
    generated text -- are the same as the original model's.
    """
    config = dataclasses.replace(model.config, vocab_size=model.config.vocab_size + 1)
    state = model.state_dict()
    for name in ("wte.weight", "lm_head.weight"):  # with tied weights both names hold the same matrix
        state[name] = torch.cat([state[name], state[name].new_zeros(1, config.d_model)])
    padded = GPT(config)
    padded.load_state_dict(state)
    return padded.eval()


def write_gpt2_tokenizer(tokenizer: BPETokenizer, out: Path, block_size: int) -> None:
    """GPT2Tokenizer files: our vocabulary files under the names transformers expects."""
    shutil.copyfile(tokenizer.files / "encoder.json", out / "vocab.json")
    shutil.copyfile(tokenizer.files / "vocab.bpe", out / "merges.txt")
    # without <|endoftext|> in the vocabulary, GPT2Tokenizer's default specials would be
    # *added* as new ids beyond the model's vocabulary; so name them only when present
    special = ENDOFTEXT if tokenizer.eot_token is not None else None
    config = {
        "tokenizer_class": "GPT2Tokenizer",
        "model_max_length": block_size,
        "add_prefix_space": False,
        "clean_up_tokenization_spaces": False,
        "bos_token": special,
        "eos_token": special,
        "unk_token": special,
    }
    write_json(out / "tokenizer_config.json", config)


def write_word_level_tokenizer(vocab: dict[str, int], out: Path, block_size: int, split: Optional[str], glue: str) -> None:
    """tokenizer.json with one token per ``split`` match (None: per whitespace-separated word)."""
    try:
        from tokenizers import Regex, decoders, models, pre_tokenizers
        from tokenizers import Tokenizer as HFTokenizer
    except ImportError:
        (out / "TOKENIZER.md").write_text(
            "Only the model was exported: the `tokenizers` package was not installed, so no tokenizer.json.\n"
        )
        print("note: `tokenizers` is not installed; exported the model only (no tokenizer)")
        return
    # anything the vocabulary lacks encodes to the UNK id (see with_unknown_token)
    hf = HFTokenizer(models.WordLevel(vocab, unk_token=UNK))
    if split is None:
        hf.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    else:
        hf.pre_tokenizer = pre_tokenizers.Split(Regex(split), behavior="isolated")
    hf.decoder = decoders.Fuse() if glue == "" else None
    hf.save(str(out / "tokenizer.json"))
    config = {
        "tokenizer_class": "PreTrainedTokenizerFast",
        "model_max_length": block_size,
        "clean_up_tokenization_spaces": False,
        "unk_token": UNK,
    }
    write_json(out / "tokenizer_config.json", config)


def write_json(path: Path, data: dict) -> None:
    path.write_text(json.dumps(data, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")


def push(out: Path, repo: str, token: str) -> str:
    """Upload ``out`` to the Hub as ``repo``; returns the repository URL."""
    try:
        from huggingface_hub import HfApi
    except ImportError:
        raise UserError("--push needs the huggingface_hub package: pip install huggingface_hub") from None
    api = HfApi(token=token)
    try:
        url = api.create_repo(repo, exist_ok=True)
        api.upload_folder(folder_path=str(out), repo_id=repo, commit_message="export from gptdecoder")
    except Exception as e:  # network, permissions, bad name: one line, no traceback
        raise UserError(f"pushing to {repo!r} failed: {type(e).__name__}: {e}") from None
    return str(url)


def run(args: argparse.Namespace) -> int:
    token = hub_token()
    if args.push and token is None:  # checked first: fail before any work is done
        raise UserError(
            f"--push {args.push} needs a Hugging Face token in HF_TOKEN "
            "(create one at https://huggingface.co/settings/tokens); or drop --push to export locally"
        )
    out = export_run(Path(args.run_dir), Path(args.hf))
    print(f"wrote {out}/ (AutoModelForCausalLM / AutoTokenizer .from_pretrained({str(out)!r}))")
    if args.push:
        print(f"pushed to {push(out, args.push, token)}")
    return 0
