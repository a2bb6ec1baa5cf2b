"""``python -m gptdecoder generate``: sample from a trained model, streaming, or chat in a REPL.

``--run`` opens anything ``gptdecoder.runs.load_model`` does: a run directory, a Hugging
Face GPT-2 directory or a nanoGPT checkpoint. What the prompt is depends on what the
source can tell:

* a tokenizer (text runs, Hugging Face directories with vocab.json + merges.txt, nanoGPT
  models with GPT-2's vocabulary, nanoGPT character models with their meta.pkl -- found
  beside the checkpoint or in nanoGPT's data/<dataset>/, or named with ``--meta``, and
  read as plain values only): the prompt is text, and each piece of the continuation is
  printed as soon as it is complete;
* a task (our task runs: sort, reverse, ...): the prompt is written in the task's
  symbols ("2 1 0 1 2 0") and the model's answer is printed next to the correct one;
* neither (a nanoGPT character model without its meta.pkl): the prompt is token ids
  ("0 17 42") and so is the continuation.

Tokens come from ``stream_tokens``, which makes exactly the choices of
``GPT.generate`` (same KV cache, same window sliding, same sampler and seed) but
yields each token as it is chosen, so output appears while the model works.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Iterator, Optional, TextIO

import torch

from gptdecoder import runtime
from gptdecoder.data.tokenizers import TextStreamer
from gptdecoder.errors import UserError
from gptdecoder.tasks.compiled import NOT_FOR, CompiledTask
from gptdecoder.model import GPT, KVCache
from gptdecoder.sampling import sample_next
from gptdecoder.runs import load_model

DEFAULT_NEW_TOKENS = 500
DEFAULT_TEMPERATURE = 0.8  # text and token ids; task runs default to greedy (temperature 0)
QUIT = "quit"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--run", dest="run_dir", required=True, metavar="PATH",
                        help="run directory, Hugging Face GPT-2 directory, or nanoGPT checkpoint (ckpt.pt)")
    parser.add_argument("--meta", metavar="PATH",
                        help="nanoGPT character model: its meta.pkl (default: beside the checkpoint, else "
                             "data/<dataset>/meta.pkl in the checkpoint directory's parent)")
    parser.add_argument("--prompt", default="",
                        help="text to continue (task runs: symbols, e.g. '2 1 0 1 2 0'; "
                             "models without a tokenizer: token ids, e.g. '0 17 42')")
    parser.add_argument("--max-new-tokens", type=int, default=None,
                        help=f"tokens to generate (default: {DEFAULT_NEW_TOKENS} for text and token ids, "
                             "the answer's length for tasks)")
    parser.add_argument("--temperature", type=float, default=None,
                        help=f"sampling temperature; 0 = greedy (default: {DEFAULT_TEMPERATURE} for text and "
                             "token ids, 0 for tasks)")
    parser.add_argument("--top-k", type=int, default=200, help="sample among the k most likely tokens (0: all)")
    parser.add_argument("--top-p", type=float, default=None, help="nucleus sampling: smallest set with this mass")
    parser.add_argument("--seed", type=int, default=None, help="random seed, for repeatable samples")
    parser.add_argument("--interactive", action="store_true",
                        help=f"a REPL: type a prompt, get a continuation; '{QUIT}' or Ctrl-D exits, "
                             "Ctrl-C stops the current generation")
    parser.add_argument("--device", default="cpu", help="cpu | cuda | mps | auto (default: cpu)")
    parser.add_argument("--threads", type=int, default=1,
                        help="CPU threads (default 1: a small model decodes one token at a time, and on a "
                             "busy machine extra threads wait for each other; 0: torch's default)")


@torch.inference_mode()
def stream_tokens(
    model: GPT,
    prompt: list[int],
    max_new_tokens: int,
    temperature: float = 1.0,
    top_k: Optional[int] = None,
    top_p: Optional[float] = None,
    generator: Optional[torch.Generator] = None,
    n_choices: Optional[int] = None,
    position_ids: Optional[list[int]] = None,
) -> Iterator[int]:
    """Yield up to ``max_new_tokens`` new token ids continuing ``prompt``; temperature 0 is greedy.

    Makes GPT.generate's choices for one sequence, through the same
    ``GPT.next_token_logits`` (KV cache, window sliding past block_size).

    ``n_choices`` limits the choice to ids below it: a vocabulary padded past its
    tokenizer's (nanoGPT gives GPT-2's 50257 tokens 50304 rows) has ids that decode to
    nothing. None (or the whole vocabulary) makes exactly GPT.generate's choices.
    ``position_ids``: the position of every token to be read (a task's coupled ids); None:
    GPT.generate's default (0, 1, ..., or a sorted draw for randomized positions).
    """
    if not prompt:
        raise UserError("the prompt encodes to no tokens: give at least one character")
    device = next(model.parameters()).device
    idx = torch.tensor([prompt], device=device)  # (1, n)
    given = None if position_ids is None else torch.tensor([position_ids], device=device)
    try:
        positions = model.generation_positions(idx, max_new_tokens, given, generator)  # (1, n + new - 1) or None
    except ValueError as e:
        raise UserError(str(e)) from None
    cache: Optional[KVCache] = None
    for _ in range(max_new_tokens):
        logits, cache = model.next_token_logits(idx, cache, positions)  # (1, vocab)
        next_id = sample_next(logits[:, :n_choices], temperature, top_k, top_p, temperature > 0, generator)  # (1, 1)
        idx = torch.cat((idx, next_id), dim=1)
        yield int(next_id)


class Session:
    """A loaded model plus the sampling settings: turns a prompt string into printed output."""

    def __init__(self, source: Path, args: argparse.Namespace, out: TextIO) -> None:
        if args.top_k is not None and args.top_k < 0:
            raise UserError(f"--top-k {args.top_k}: expected >= 0 (0 means no limit)")
        if args.top_p is not None and not 0.0 < args.top_p <= 1.0:
            raise UserError(f"--top-p {args.top_p}: expected a number in (0, 1]")
        if args.max_new_tokens is not None and args.max_new_tokens < 0:
            raise UserError(f"--max-new-tokens {args.max_new_tokens}: expected >= 0")
        try:
            device = runtime.resolve_device(args.device)
        except ValueError as e:
            raise UserError(f"--device: {e}") from None
        self.loaded = load_model(source, device, meta=args.meta)
        self.model = self.loaded.model.eval()
        self.task = self.loaded.task
        if self.task is not None and self.task.name == CompiledTask.name:
            raise UserError(f"generate writes an answer after a prompt, token by token; {NOT_FOR}")
        self.out = out
        self.tokenizer = None if self.task is not None else self.loaded.tokenizer  # read only when needed
        default_temperature = 0.0 if self.task is not None else DEFAULT_TEMPERATURE
        self.temperature = default_temperature if args.temperature is None else args.temperature
        if self.temperature < 0:
            raise UserError(f"--temperature {self.temperature}: expected >= 0 (0 = greedy)")
        self.top_k = args.top_k or None
        self.top_p = args.top_p
        self.max_new_tokens = args.max_new_tokens
        # one generator for the whole session: repeatable with --seed, yet each REPL turn differs
        self.generator = torch.Generator(device).manual_seed(args.seed) if args.seed is not None else None

    def respond(self, prompt: str) -> None:
        """Generate for one prompt and print as it goes (Ctrl-C propagates to the caller)."""
        if self.task is not None:
            self.respond_task(prompt)
        elif self.tokenizer is not None:
            self.respond_text(prompt)
        else:
            self.respond_ids(prompt)

    def sample(self, ids: list[int], n: int, position_ids: Optional[list[int]] = None) -> Iterator[int]:
        vocab = self.model.config.vocab_size
        bad = [i for i in ids if not 0 <= i < vocab]
        if bad:
            raise UserError(f"token id {bad[0]} is beyond the model's vocabulary (ids 0..{vocab - 1})")
        n_choices = self.tokenizer.n_vocab if self.tokenizer is not None else None  # never a padding id
        return stream_tokens(self.model, ids, n, self.temperature, self.top_k, self.top_p, self.generator, n_choices,
                             position_ids)

    def respond_text(self, prompt: str) -> None:
        assert self.tokenizer is not None
        ids = self.tokenizer.encode(prompt) if prompt else self.start_ids()
        n = DEFAULT_NEW_TOKENS if self.max_new_tokens is None else self.max_new_tokens
        streamer = TextStreamer(self.tokenizer)
        self.write(prompt)
        try:
            for token in self.sample(ids, n):
                self.write(streamer.push(token))
        finally:  # also after Ctrl-C: show what was produced, end the line
            self.write(streamer.flush() + "\n")

    def start_ids(self) -> list[int]:
        """An empty prompt starts after a newline, as nanoGPT samples (the corpus has no
        <|endoftext|>, so that token would be a context the model never saw)."""
        assert self.tokenizer is not None
        try:
            return self.tokenizer.encode("\n")
        except UserError:  # a one-line corpus: start from the first character instead
            return [0]

    def respond_ids(self, prompt: str) -> None:
        """No tokenizer and no task: the prompt and the continuation are token ids."""
        if not prompt.strip():
            raise UserError(f"{self.loaded.description} has no tokenizer ({self.loaded.no_tokenizer}): "
                            f"give the prompt as token ids, e.g. --prompt '0 1 2'")
        ids = parse_ids(prompt, self.loaded.no_tokenizer)
        n = DEFAULT_NEW_TOKENS if self.max_new_tokens is None else self.max_new_tokens
        self.write(" ".join(map(str, ids)) + " ->")
        try:
            for token in self.sample(ids, n):
                self.write(f" {token}")
        finally:  # also after Ctrl-C: end the line
            self.write("\n")

    def respond_task(self, prompt: str) -> None:
        task = self.task
        ids = parse_symbols(prompt, task.symbols)
        expected: Optional[list[int]] = None
        try:
            expected = task.solve(ids)
        except Exception:  # a prompt the task would never produce (e.g. wrong length): no reference
            pass
        if self.max_new_tokens is not None:
            n = self.max_new_tokens
        else:
            n = len(expected) if expected is not None else max(1, task.seq_len - len(ids))
        answer = list(self.sample(ids, n, self.task_positions(ids, n)))
        line = f"{spaced(ids, task.symbols)} -> {spaced(answer, task.symbols)}"
        if expected is not None:
            line += "  (correct)" if answer == expected else f"  (expected {spaced(expected, task.symbols)})"
        self.write(line + "\n")

    def task_positions(self, ids: list[int], n: int) -> Optional[list[int]]:
        """The task's coupled position ids for this prompt and n answer tokens (None when the
        task does not couple them); a prompt the task cannot place is a UserError."""
        if not self.task.couples_positions:
            return None
        try:
            return self.task.position_ids(ids, n)
        except (ValueError, IndexError):
            raise UserError(f"the prompt {spaced(ids, self.task.symbols)!r} is not one task "
                            f"{self.task.name!r} can place (its position ids come from the prompt's layout)") from None

    def write(self, text: str) -> None:
        self.out.write(text)
        self.out.flush()


def parse_symbols(prompt: str, symbols: list[str]) -> list[int]:
    """'2 1 0' (or '210' when every symbol is one character) -> token ids, else UserError."""
    if not prompt.strip():
        raise UserError(f"empty prompt: write it in the task's symbols ({' '.join(symbols)})")
    single = all(len(s) == 1 for s in symbols)
    parts = prompt.split() if (not single or any(c.isspace() for c in prompt.strip())) else list(prompt.strip())
    index = {s: i for i, s in enumerate(symbols)}
    unknown = [p for p in parts if p not in index]
    if unknown:
        raise UserError(f"{unknown[0]!r} is not one of the task's symbols: {' '.join(symbols)}")
    return [index[p] for p in parts]


def parse_ids(prompt: str, why: str = "") -> list[int]:
    """'0 17 42' (or '0,17,42') -> [0, 17, 42], else UserError naming the first bad piece
    (and ``why`` the model has no tokenizer, when known)."""
    parts = prompt.replace(",", " ").split()
    bad = [p for p in parts if not (p.isascii() and p.isdigit())]
    if bad:
        because = f" ({why})" if why else ""
        raise UserError(f"{bad[0]!r} is not a token id: this model has no tokenizer{because}, so the prompt is "
                        f"token ids separated by spaces, e.g. '0 17 42'")
    return [int(p) for p in parts]


def spaced(ids: list[int], symbols: list[str]) -> str:
    return " ".join(symbols[i] if 0 <= i < len(symbols) else f"<{i}>" for i in ids)


def repl(session: Session, read=input) -> None:
    """Prompt with '>> ' until 'quit' or end of input; Ctrl-C cancels one generation only."""
    while True:
        try:
            line = read(">> ")
        except EOFError:
            session.write("\n")
            return
        except KeyboardInterrupt:  # at the prompt: drop the line, ask again
            session.write("\n")
            continue
        if line.strip() == QUIT:
            return
        try:
            session.respond(line)
        except KeyboardInterrupt:
            session.write("[stopped]\n")
        except UserError as e:
            session.write(f"error: {e}\n")


def run(args: argparse.Namespace) -> int:
    if args.threads < 0:
        raise UserError(f"--threads {args.threads}: expected >= 0")
    if args.threads:
        torch.set_num_threads(args.threads)
    session = Session(Path(args.run_dir), args, sys.stdout)
    if args.interactive:
        repl(session)
    else:
        session.respond(args.prompt)
    return 0
