"""What every synthetic task shares: the Task base class, the sequence format and the split.

A task is a tiny dataclass: its parameters are the dataclass fields, ``symbols`` names
each token id, ``sample_prompt(rng)`` draws a prompt and ``solve(prompt)`` computes the
one correct answer. Everything else (sampling train/test examples, enumerating a small
held-out set, length generalisation variants) is built on those two methods here.

The train/test split is a stable hash of the prompt: the same prompt is on the same
side of the split on every machine and in every run, so a test prompt is never trained on.
"""
from __future__ import annotations

import dataclasses
import itertools
import random
import zlib
from typing import ClassVar, Iterable, Iterator, Optional

Example = tuple[list[int], list[int]]  # (prompt, answer)

# Prompt spaces up to this size are enumerated when building the held-out set, so a
# small task (sort of 6 digits from 0-2: 3^6 = 729 prompts) is tested on every test prompt.
ENUMERATE_LIMIT = 200_000


class Prompt(list):
    """A prompt (a list of token ids) some of whose own tokens are predictable from the
    tokens before them, e.g. the values of earlier queries in multi-query recall.
    ``scored`` holds their indices in the prompt: build_example puts them under the loss
    mask as well (more supervised tokens per sequence); evaluation still scores only the answer."""

    def __init__(self, tokens: Iterable[int] = (), scored: Iterable[int] = ()) -> None:
        super().__init__(tokens)
        self.scored = frozenset(scored)


def build_example(prompt: list[int], answer: list[int]) -> tuple[list[int], list[int], list[int]]:
    """(prompt, answer) -> (x, y, mask) for next-token training.

    The model reads seq = prompt + answer; x = seq[:-1] and y = seq[1:] (y[i] is the token
    after x[i]). mask[i] is 1 where y[i] is an answer token: the prompt is random, so
    predicting it is noise; only the answer is learned and scored. (A ``Prompt`` may name
    prompt tokens that are not noise; those are learned too.)
    """
    seq = list(prompt) + answer
    x, y = seq[:-1], seq[1:]
    scored = getattr(prompt, "scored", frozenset())
    mask = [1 if i + 1 >= len(prompt) or i + 1 in scored else 0 for i in range(len(y))]
    return x, y, mask


def prompt_hash(prompt: Iterable[int]) -> int:
    """CRC32 of the prompt's decimal text: stable across runs, machines and Python versions
    (unlike the built-in hash(), which is salted per process for str and bytes)."""
    return zlib.crc32(",".join(str(t) for t in prompt).encode())


@dataclasses.dataclass
class Task:
    """Base class. Subclasses add fields (their parameters) and implement
    ``__post_init__`` (setting ``self.symbols``), ``sample_prompt`` and ``solve``."""

    name: ClassVar[str] = ""
    # True when the task has ``length`` and ``min_length`` fields and marks the end of the
    # prompt, so it can be tested on longer inputs than it was trained on (``with_length``).
    length_varies: ClassVar[bool] = False

    test_fraction: float = 0.2  # share of all prompts held out for testing

    def __post_init__(self) -> None:
        self.symbols: list[str] = []
        if not 0.0 < self.test_fraction < 1.0:
            raise ValueError(f"test_fraction={self.test_fraction}: expected a number in (0, 1)")

    # -- to implement ------------------------------------------------------------------

    def sample_prompt(self, rng: random.Random) -> list[int]:
        raise NotImplementedError

    def solve(self, prompt: list[int]) -> list[int]:
        raise NotImplementedError

    def all_prompts(self) -> Optional[Iterator[list[int]]]:
        """Every possible prompt, when the space is small enough to list; else None."""
        return None

    def source_positions(self, prompt: list[int], answer: list[int]) -> list[list[int]]:
        """For each answer token, the prompt positions holding what it is computed from.

        The attention lab scores each head by how much attention the position that
        predicts answer token j pays to these positions (gptdecoder/lab/scores.py).
        The base class knows no task, so every answer token gets [] (no source):
        a score built on it then leaves the task out instead of guessing.
        """
        return [[] for _ in answer]

    @property
    def samples_uniformly(self) -> bool:
        """True when sample_prompt draws uniformly from all_prompts()."""
        return False

    def prompt_weight(self, prompt: list[int]) -> Optional[float]:
        """How likely sample_prompt is to draw ``prompt``, relative to the other prompts of
        all_prompts(); None when unknown. A trainer may then draw rows from a pre-built
        table of all training examples with these weights instead of calling sample_prompt."""
        return 1.0 if self.samples_uniformly else None

    @property
    def seq_len(self) -> int:
        """The longest len(prompt) + len(answer); the model needs block_size >= seq_len - 1."""
        raise NotImplementedError

    # -- shared ------------------------------------------------------------------------

    @property
    def vocab_size(self) -> int:
        return len(self.symbols)

    @property
    def params(self) -> dict:
        """The task's parameters (its dataclass fields), e.g. for results.json."""
        return dataclasses.asdict(self)

    def token(self, symbol: str) -> int:
        return self.symbols.index(symbol)

    def sample(self, rng: random.Random) -> Example:
        """A random (prompt, answer), from either side of the split."""
        prompt = self.sample_prompt(rng)
        return prompt, self.solve(prompt)

    def is_test(self, prompt: list[int]) -> bool:
        return prompt_hash(prompt) % 10_000 < self.test_fraction * 10_000

    def sample_train(self, rng: random.Random, step: int = 0) -> Example:
        """A random training example for optimizer step ``step``: prompts on the test side
        are redrawn. Since the trainer derives ``rng`` from (seed, rank, step), a batch
        stays a function of the step, so resumed and multi-process runs see the same data."""
        while True:
            prompt = self.train_prompt(rng, step)
            if not self.is_test(prompt):
                return prompt, self.solve(prompt)

    def train_prompt(self, rng: random.Random, step: int) -> list[int]:
        """The prompt to draw at training step ``step``: sample_prompt, unless the task has
        a curriculum (see RecallTask)."""
        return self.sample_prompt(rng)

    def test_examples(self, n: int, seed: int = 0) -> list[Example]:
        """The held-out set: all test prompts when there are at most n of them (small
        spaces are enumerated), else n distinct test prompts, the same for a given seed."""
        return self._examples(n, seed, want_test=True)

    def train_examples(self, n: int, seed: int = 0) -> list[Example]:
        """Like test_examples, from the training side (to measure train accuracy)."""
        return self._examples(n, seed, want_test=False)

    def _examples(self, n: int, seed: int, want_test: bool) -> list[Example]:
        rng = random.Random(seed)
        listed = self.all_prompts()
        if listed is not None:
            prompts = [p for p in listed if self.is_test(p) == want_test]
            if len(prompts) > n:
                prompts = rng.sample(prompts, n)
        else:
            seen: set[tuple[int, ...]] = set()
            prompts = []
            for _ in range(50 * n):  # bounded, in case the space is smaller than it looks
                if len(prompts) == n:
                    break
                p = self.sample_prompt(rng)
                if self.is_test(p) == want_test and tuple(p) not in seen:
                    seen.add(tuple(p))
                    prompts.append(p)
        return [(p, self.solve(p)) for p in prompts]

    def with_length(self, length: int) -> "Task":
        """The same task with inputs of exactly ``length`` (for length generalisation)."""
        if not self.length_varies:
            raise ValueError(f"task {self.name!r} has no variable length")
        return dataclasses.replace(self, length=length, min_length=length)

    def longer_variants(self, longer_by: int, block_size: Optional[int] = None) -> list["Task"]:
        """This task with inputs 1..longer_by longer (those that fit ``block_size``, if given),
        for testing on lengths never trained on; [] when the length is fixed."""
        variants = []
        if not self.length_varies:
            return variants
        for extra in range(1, longer_by + 1):
            try:
                longer = self.with_length(self.length + extra)
            except ValueError:  # e.g. histogram counts stop at 9
                break
            if block_size is None or longer.seq_len - 1 <= block_size:
                variants.append(longer)
        return variants

    def context_sizes(self, longer_by: int) -> tuple[int, int]:
        """(the shortest block_size that holds a training sequence, the one that also holds
        the ``longer_by`` longer test inputs): x is seq[:-1], so seq_len - 1 positions."""
        needed = self.seq_len - 1
        return needed, max([needed] + [t.seq_len - 1 for t in self.longer_variants(longer_by)])

    def format(self, tokens: Iterable[int]) -> str:
        """Tokens as text: symbols glued together when all are one character, else spaced."""
        names = [self.symbols[t] if 0 <= t < len(self.symbols) else f"<{t}>" for t in tokens]
        return ("" if all(len(s) == 1 for s in self.symbols) else " ").join(names)


def enumerate_sequences(alphabet: int, lengths: Iterable[int]) -> Optional[Iterator[list[int]]]:
    """All sequences over range(alphabet) with the given lengths, or None if too many."""
    lengths = list(lengths)
    if sum(alphabet**n for n in lengths) > ENUMERATE_LIMIT:
        return None
    return (list(s) for n in lengths for s in itertools.product(range(alphabet), repeat=n))
