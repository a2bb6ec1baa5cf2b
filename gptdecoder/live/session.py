"""What the live lab asks a model: one function per request, plain JSON-ready values out.

A ``LiveModel`` wraps a model ``load_model`` opened (our task and text runs, Hugging Face
GPT-2 directories, nanoGPT checkpoints). Each request is answered by one method, under one
lock: hooks (ablation) are attached to the model for the duration of a call and removed
before the next one starts, so an ablation asked for by one request never shows in
another. Inputs are checked here and refused with a ``LiveError`` (one line, for a 400).

A task run takes the task's symbols (``021201=`` for sort; symbols of more than one
character are separated by spaces) and answers with its greedy answer, the correct one,
and the held-out exact match on a bounded sample, with and without the heads switched
off. A text run takes text, encoded by its tokenizer, and answers with the next-token
distribution; the task-only parts are left out and the page says so.
"""
from __future__ import annotations

import threading
from dataclasses import dataclass
from typing import Optional, Sequence

import torch

from gptdecoder.lab.ablation import ablation_hooks, encode_examples, exact_match, mean_head_outputs
from gptdecoder.lab.capture import capture_attention
from gptdecoder.lab.scores import detection_patterns, detection_score, source_scores
from gptdecoder.errors import UserError
from gptdecoder.lab.views import viewer_data
from gptdecoder.data.tokenizers import Tokenizer
from gptdecoder.model import GPT
from gptdecoder.runs import LoadedModel
from gptdecoder.tasks import Task

MAX_PROMPT_CHARS = 2000  # longer text is refused before it is tokenized
HELD_OUT = 200  # held-out prompts the exact match is measured on (a bounded sample, labelled)
TOP_K = 10  # next-token candidates shown
MAX_NEW_TOKENS = 64  # the longest generation a request may ask for
MAX_TOKENS = 128  # the longest prompt, in tokens: every head's attention is sent back (heads x T^2 weights)
ABLATION_MODES = ("zero", "mean")
MIN_TEMPERATURE = 0.01  # below this, sampling's logits / temperature overflow


# The requests a page may make, and the fields each one's JSON object may hold (the
# parameters of the LiveModel method of that name; "prompt" is required where it appears).
REQUESTS = {
    "info": frozenset(),
    "analyse": frozenset({"prompt", "heads", "mode"}),
    "generate": frozenset({"prompt", "max_new_tokens", "temperature", "top_k", "greedy", "heads", "mode", "seed"}),
}


class LiveError(ValueError):
    """Input the model cannot take (unknown symbol, too long, bad parameter): one line for the page."""


@dataclass(frozen=True)
class Request:
    """One request, checked: the prompt's ids, the heads to switch off, how."""

    ids: list[int]
    heads: tuple[tuple[int, int], ...]
    mode: str


class LiveModel:
    """A model behind a lock, answering the live page's (or the widget's) requests.

    ``LiveModel.from_loaded(load_model(path))`` for anything load_model opens; or a model in
    memory with its task (task symbols in, answers out) or its tokenizer (text in)."""

    def __init__(self, model: GPT, task: Optional[Task] = None, tokenizer: Optional[Tokenizer] = None,
                 description: str = "a model in memory", no_tokenizer: str = "") -> None:
        self.model, self.task, self.description = model.eval(), task, description
        self.tokenizer = None if task is not None else tokenizer
        self.no_tokenizer = no_tokenizer or ("give the widget a task or a tokenizer" if tokenizer is None else "")
        self.lock = threading.Lock()
        self.device = next(self.model.parameters()).device
        self.held_out = None
        if self.task is not None:  # the bounded sample the page's exact match is measured on
            examples = self.task.test_examples(HELD_OUT, seed=0)
            self.held_out = encode_examples(examples, self.task) if examples else None
        self._means = None  # each head's mean output over the held-out sample (mean ablation), on first use
        self._baseline: Optional[float] = None
        # mean ablation needs a reference batch: a task's held-out prompts (a text model has none)
        self.modes = ABLATION_MODES if self.held_out is not None else ("zero",)
        self.max_tokens = min(self.model.config.block_size, MAX_TOKENS)

    @classmethod
    def from_loaded(cls, loaded: LoadedModel) -> "LiveModel":
        """A model load_model opened: its task, or else its tokenizer (read here, once)."""
        tokenizer = loaded.tokenizer if loaded.task is None else None
        return cls(loaded.model, loaded.task, tokenizer, loaded.description, loaded.no_tokenizer)

    def answer(self, kind: object, body: object) -> dict:
        """One request of either door (the HTTP server, the notebook widget): ``kind`` one of
        REQUESTS and ``body`` its fields; LiveError (one line) for anything else."""
        if not isinstance(kind, str) or kind not in REQUESTS:
            raise LiveError(f"unknown request {str(kind)[:40]!r}")
        if not isinstance(body, dict):
            raise LiveError("the request body must be a JSON object")
        unknown = sorted(set(body) - REQUESTS[kind])
        if unknown:
            raise LiveError(f"unknown field {str(unknown[0])[:40]!r}")
        if "prompt" in REQUESTS[kind] and "prompt" not in body:
            raise LiveError("the field 'prompt' is required")
        return getattr(self, kind)(**body)

    # -- what the page shows before any request --------------------------------------------------

    def info(self) -> dict:
        c = self.model.config
        return {
            "description": self.description, "n_layer": c.n_layer, "n_head": c.n_head,
            "block_size": c.block_size, "kind": "task" if self.task is not None else "text",
            "task": None if self.task is None else {"name": self.task.name, "symbols": self.task.symbols,
                                                    "example": self._example_prompt()},
            "tokenizer": None if self.tokenizer is None else self.tokenizer.kind,
            "text_note": None if self.task is not None else
            "a text model: no task, so no held-out exact match and no source scores",
            "limits": {"prompt_chars": MAX_PROMPT_CHARS, "prompt_tokens": self.max_tokens,
                       "max_new_tokens": MAX_NEW_TOKENS, "held_out": HELD_OUT},
            "modes": list(self.modes),
        }

    def _example_prompt(self) -> str:
        examples = self.task.test_examples(1, seed=0)
        return self.task.format(examples[0][0]) if examples else ""

    # -- checking a request ------------------------------------------------------------------------

    def parse(self, prompt: object, heads: object = (), mode: object = "zero") -> Request:
        """The request's prompt as ids, and its heads; LiveError with one line otherwise."""
        if not isinstance(prompt, str):
            raise LiveError("prompt: expected a string")
        if len(prompt) > MAX_PROMPT_CHARS:
            raise LiveError(f"prompt: {len(prompt)} characters; at most {MAX_PROMPT_CHARS}")
        if mode not in self.modes:
            raise LiveError(f"mode {mode!r}: expected one of {', '.join(self.modes)}"
                            + ("" if self.task is not None else " (mean ablation needs a task's held-out prompts)"))
        ids = self._encode(prompt)
        if not ids:
            raise LiveError("prompt: empty; type some " + ("symbols" if self.task is not None else "text"))
        if len(ids) > self.max_tokens:
            raise LiveError(f"prompt: {len(ids)} tokens; the lab takes at most {self.max_tokens}")
        if mode == "mean" and len(ids) > self.held_out.x.size(1):
            raise LiveError(f"mean ablation covers prompts of up to {self.held_out.x.size(1)} tokens (the held-out "
                            f"prompts' length, over which each head's mean is taken); use zero ablation")
        return Request(ids, self._heads(heads), mode)

    def _encode(self, prompt: str) -> list[int]:
        if self.task is None:
            if self.tokenizer is None:
                raise LiveError(f"this model has no tokenizer: {self.no_tokenizer}")
            try:
                return self.tokenizer.encode(prompt)
            except UserError as e:  # e.g. a character the vocabulary does not have
                raise LiveError(str(e).splitlines()[0]) from None
        symbols = self.task.symbols
        single = all(len(s) == 1 for s in symbols)
        pieces = [c for c in prompt if not c.isspace()] if single else prompt.split()
        ids = []
        for at, piece in enumerate(pieces):
            if piece not in symbols:
                raise LiveError(f"unknown symbol {piece!r} at {at + 1}; the task's symbols are {' '.join(symbols)}")
            ids.append(symbols.index(piece))
        return ids

    def _heads(self, heads: object) -> tuple[tuple[int, int], ...]:
        c = self.model.config
        if not isinstance(heads, (list, tuple)) or len(heads) > c.n_layer * c.n_head:
            raise LiveError("heads: expected a list of [layer, head] pairs")
        checked = []
        for pair in heads:
            if (not isinstance(pair, (list, tuple)) or len(pair) != 2
                    or not all(isinstance(v, int) and not isinstance(v, bool) for v in pair)
                    or not (0 <= pair[0] < c.n_layer and 0 <= pair[1] < c.n_head)):
                raise LiveError(f"heads: {pair!r} is not a [layer, head] of this model "
                                f"({c.n_layer} layers x {c.n_head} heads)")
            checked.append((pair[0], pair[1]))
        return tuple(sorted(set(checked)))

    def _hooks(self, request: Request) -> list:
        if not request.heads:
            return []
        if request.mode == "mean" and self._means is None:  # over the held-out sample, once
            pos = None if self.held_out.pos is None else self.held_out.pos.to(self.device)
            self._means = mean_head_outputs(self.model, self.held_out.x.to(self.device), pos)
        return ablation_hooks(list(request.heads), request.mode, self._means if request.mode == "mean" else None)

    # -- answering ---------------------------------------------------------------------------------

    @torch.no_grad()
    def analyse(self, prompt: object, heads: object = (), mode: object = "zero") -> dict:
        """Everything the page draws for one prompt: tokens, attention of every layer, the
        prediction (and for a task run the greedy answer and the held-out exact match) with
        the given heads off, next to the same without them; per-head scores; the logit lens."""
        request = self.parse(prompt, heads, mode)
        idx = torch.tensor([request.ids], device=self.device)
        with self.lock:
            plain = self._predict(idx, [], self.model.config.block_size)
            hooks = self._hooks(request)
            ablated = self._predict(idx, hooks, self._reach(request)) if hooks else plain
            with self.model.hooks(hooks):  # what the page draws is the model with those heads off
                patterns = capture_attention(self.model, idx)
                lens = self._lens(idx)
                scores = self._scores(idx, patterns, request.ids)
            held_out = self._held_out(hooks) if self.task is not None else None
        labels = self._labels(request.ids)
        result = {  # the attention's JSON is built after the lock is released: other requests go on
            "tokens": labels, "ids": request.ids, "heads_off": [list(h) for h in request.heads],
            "mode": request.mode, "attention": viewer_data([p.cpu() for p in patterns], labels),
            "prediction": ablated, "prediction_all_heads": plain, "lens": lens, "scores": scores,
        }
        if self.task is not None:
            result["held_out"] = held_out
        return result

    def _labels(self, ids: Sequence[int]) -> list[str]:
        if self.task is not None:
            return [self.task.symbols[i] for i in ids]
        return [self.tokenizer.decode([i]) for i in ids]

    def _predict(self, idx: torch.Tensor, hooks: list, reach: int) -> dict:
        """The next-token distribution's top candidates, and for a task run the greedy answer."""
        with self.model.hooks(hooks):
            logits, _ = self.model(idx)
            probs = logits[0, -1].float().softmax(-1)
            top = probs.topk(min(TOP_K, probs.numel()))
            out = {"top": [{"token": self._labels([int(i)])[0], "id": int(i), "p": round(float(p), 4)}
                           for p, i in zip(top.values, top.indices)]}
            if self.task is not None:
                n = self._answer_length(idx[0].tolist(), reach)
                answer = self._continue(idx, n, greedy=True)
                out["answer"] = self.task.format(answer)
                out["correct"] = self._correct(idx[0].tolist())
        return out

    def _continue(self, idx: torch.Tensor, n: int, greedy: bool = True, temperature: float = 1.0,
                  top_k: Optional[int] = None, seed: int = 0) -> list[int]:
        """n more tokens after idx (1, T), the whole window re-encoded at each step (no KV
        cache), so that whatever hooks are attached (mean ablation included) see every position."""
        out = self.model.generate(idx, n, temperature=temperature, top_k=top_k, do_sample=not greedy, seed=seed,
                                  use_cache=False)
        return out[0, idx.size(1):].tolist()

    def _reach(self, request: Request) -> int:
        """How many positions a run of ``request`` may cover: under mean ablation the held-out
        prompts' length (a head's mean exists only at their positions), else the context."""
        if request.mode == "mean" and request.heads:
            return min(self.model.config.block_size, self.held_out.x.size(1))
        return self.model.config.block_size

    def _answer_length(self, ids: list[int], reach: int) -> int:
        try:
            n = len(self.task.solve(ids))
        except Exception:  # not a prompt of the task (e.g. no '=' yet): show a few tokens
            n = 4
        return max(1, min(n, reach - len(ids) + 1, MAX_NEW_TOKENS))

    def _correct(self, ids: list[int]) -> Optional[str]:
        try:
            return self.task.format(self.task.solve(ids))
        except Exception:
            return None

    def _held_out(self, hooks: list) -> Optional[dict]:
        if self.held_out is None:
            return None
        if self._baseline is None:
            self._baseline = exact_match(self.model, self.held_out)
        with_heads_off = exact_match(self.model, self.held_out, hooks) if hooks else self._baseline
        return {"examples": int(self.held_out.x.size(0)), "exact_match": self._baseline,
                "exact_match_heads_off": with_heads_off}

    def _scores(self, idx: torch.Tensor, patterns: list[torch.Tensor], ids: list[int]) -> dict:
        """Per-head previous-token, duplicate-token and induction scores on this input (and the
        source score of a task run's own prompt when it is one), as [layer][head]."""
        stacked = torch.stack([p.float() for p in patterns])  # [L, 1, H, T, T]
        scores = {kind: detection_score(stacked, detect.to(stacked.device)).tolist()
                  for kind, detect in detection_patterns(idx.cpu()).items()}
        if self.task is not None:
            try:
                answer = self.task.solve(ids)
                scores["source"] = source_scores(self.model, self.task, [(ids, answer)]).tolist()
            except Exception:
                pass  # not a whole prompt of the task: no sources to score
        return scores

    def _lens(self, idx: torch.Tensor) -> list[dict]:
        """The logit lens at the last position: the top token read from the residual stream
        after the embeddings and after each block, through the final norm and the unembedding."""
        names = ["blocks.0.hook_resid_pre"] + [f"blocks.{i}.hook_resid_post" for i in range(self.model.config.n_layer)]
        _, cache = self.model.run_with_cache(idx, names_filter=names)
        rows = []
        for stage, name in enumerate(names):
            probs = self.model.lm_head(self.model.ln_final(cache[name][0, -1])).float().softmax(-1)
            p, i = probs.max(-1)
            rows.append({"stage": "embeddings" if stage == 0 else f"block {stage - 1}",
                         "token": self._labels([int(i)])[0], "p": round(float(p), 4)})
        return rows

    @torch.no_grad()
    def generate(self, prompt: object, max_new_tokens: object = 16, temperature: object = 1.0,
                 top_k: object = None, greedy: object = False, heads: object = (), mode: object = "zero",
                 seed: object = 0) -> dict:
        """Sampled (or greedy) continuation, with the given heads off."""
        request = self.parse(prompt, heads, mode)
        if not isinstance(max_new_tokens, int) or not 1 <= max_new_tokens <= MAX_NEW_TOKENS:
            raise LiveError(f"max_new_tokens: expected 1..{MAX_NEW_TOKENS}")
        if (not isinstance(temperature, (int, float)) or isinstance(temperature, bool)
                or not MIN_TEMPERATURE <= temperature <= 10):
            raise LiveError(f"temperature: expected a number in [{MIN_TEMPERATURE}, 10]")
        if top_k is not None and (not isinstance(top_k, int) or isinstance(top_k, bool) or top_k < 1):
            raise LiveError("top_k: expected a positive integer or null")
        if not isinstance(greedy, bool) or not isinstance(seed, int) or isinstance(seed, bool) or not 0 <= seed < 2**63:
            raise LiveError("greedy: expected true or false; seed: an integer in [0, 2^63)")
        if len(request.ids) + max_new_tokens - 1 > self._reach(request) and request.mode == "mean" and request.heads:
            raise LiveError(f"mean ablation covers {self._reach(request)} positions: ask for at most "
                            f"{self._reach(request) - len(request.ids) + 1} new tokens, or use zero ablation")
        idx = torch.tensor([request.ids], device=self.device)
        with self.lock:
            with self.model.hooks(self._hooks(request)):
                new = self._continue(idx, max_new_tokens, greedy, float(temperature), top_k, seed)
        text = self.task.format(new) if self.task is not None else self.tokenizer.decode(new)
        return {"tokens": self._labels(new), "text": text}

