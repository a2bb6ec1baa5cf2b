"""What every synthetic task shares: the Task base class, the sequence format and the split.

A task is a tiny dataclass: its parameters are the dataclass fields, ``symbols`` names
each token id, ``sample_prompt(rng)`` draws a prompt and ``solve(prompt)`` computes the
one correct answer. Everything else (sampling train/test examples, enumerating a small
held-out set, length generalisation variants) is built on those two methods here.

Lengths: a task whose size can vary names the two fields that bound it
(``length_field``, e.g. ``length``, and ``min_length_field``, e.g. ``min_length``;
addition counts digits per operand, recall counts key-value pairs). Training prompts
have min..max of that length; ``with_length(n)`` is the same task at exactly n, which
is how held-out prompts of each test length are made (``test_lengths``).

The train/test split is a stable hash of the prompt: the same prompt is on the same
side of the split on every machine and in every run, so a test prompt is never trained on.
"""
from __future__ import annotations

import dataclasses
import itertools
import random
import zlib
from typing import ClassVar, Iterable, Iterator, Optional, Sequence

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
    # The fields holding the longest and the shortest training length (a min_length of
    # None means the longest); None for a task without a length (modular).
    length_field: ClassVar[Optional[str]] = None
    min_length_field: ClassVar[Optional[str]] = None
    length_unit: ClassVar[str] = "symbols"  # what one unit of length is, for messages

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

    def build(self, prompt: list[int], answer: list[int]) -> tuple[list[int], list[int], list[int]]:
        """How an example is laid out for the model, (x, y, mask): ``build_example`` (the
        answer follows the prompt) for every synthetic task; a compiled program instead
        answers at each input position."""
        return build_example(prompt, answer)

    # What ``corrupt`` changes, in words (the circuit report says it).
    corruption: ClassVar[str] = "one token the answer is computed from replaced by another"

    def corrupt(self, prompt: list[int], rng: random.Random) -> Optional[list[int]]:
        """A corrupted twin of ``prompt`` for circuit finding, or None when none is found.

        Activation patching compares a model on a clean prompt with the same model on a
        corrupted one and asks which edges carry the difference. The twin has the same
        length, so every position lines up, and an answer of the same length that differs:
        one of the tokens the answer is computed from (``source_positions``) is replaced by
        another token seen at source positions of this task's prompts. Tasks whose sources
        are too coarse for that override this (recall changes its query).
        """
        answer = self.solve(prompt)
        sources = self.corruptible_positions(prompt, answer)
        candidates = self.source_tokens()
        if not sources or len(candidates) < 2:
            return None
        for _ in range(64):  # bounded: a few draws may leave the answer unchanged
            i, token = rng.choice(sources), rng.choice(candidates)
            if token == prompt[i]:
                continue
            twin = list(prompt)
            twin[i] = token
            if self.answer_differs(prompt, answer, twin):
                return Prompt(twin, prompt.scored) if isinstance(prompt, Prompt) else twin
        return None

    def corruptible_positions(self, prompt: list[int], answer: list[int]) -> list[int]:
        """The prompt positions ``corrupt`` may change: those the answer is computed from."""
        return sorted({i for positions in self.source_positions(prompt, answer) for i in positions})

    def answer_differs(self, prompt: list[int], answer: list[int], twin: list[int]) -> bool:
        """True when ``twin`` is a prompt this task can solve, of the same length as
        ``prompt``, whose answer has answer's length but not its tokens."""
        try:
            twin_answer = self.solve(twin)
        except (ValueError, IndexError):  # e.g. a bracket sequence that no longer parses
            return False
        return len(twin) == len(prompt) and len(twin_answer) == len(answer) and twin_answer != answer

    def source_tokens(self) -> list[int]:
        """The token ids found at source positions of this task's prompts (from a fixed
        sample of 200, so the same on every machine): what ``corrupt`` may put there.
        Kept after the first call (a task's parameters do not change)."""
        if "_source_tokens" in self.__dict__:
            return self.__dict__["_source_tokens"]
        rng, seen = random.Random(0), set()
        for _ in range(200):
            prompt = self.sample_prompt(rng)
            for positions in self.source_positions(prompt, self.solve(prompt)):
                seen.update(prompt[i] for i in positions)
        self.__dict__["_source_tokens"] = sorted(seen)
        return self.__dict__["_source_tokens"]

    @property
    def couples_positions(self) -> bool:
        """True when the task gives each token its own position id (``position_ids``)."""
        return False

    def position_ids(self, prompt: list[int], answer_length: int) -> list[int]:
        """The position id of each token of prompt + answer, for a task that couples them.

        Position coupling (Cho et al. 2024; McLeish et al. 2024's Abacus embeddings): a
        token that is computed from another gets a position id tied to that one's, instead
        of its place in the sequence, so the lookup "attend to the token whose id is one
        past mine" is the same at every length. Ids start at 0 here; training adds a random
        offset to each sequence so that every id of the model's range is trained, and
        evaluation uses them as they are. A task that does not couple has no such ids.
        """
        raise ValueError(f"task {self.name!r} does not couple positions")

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

    # -- lengths -----------------------------------------------------------------------

    @property
    def length_varies(self) -> bool:
        """True when the prompt's length can vary, i.e. the prompt marks where it ends, so
        the task can be tested at other lengths than it was trained on (``with_length``)."""
        return self.length_field is not None

    @property
    def length_range(self) -> Optional[tuple[int, int]]:
        """(shortest, longest) training length, in ``length_unit``; None without a length."""
        if self.length_field is None:
            return None
        longest = getattr(self, self.length_field)
        shortest = getattr(self, self.min_length_field) if self.min_length_field else None
        return (longest if shortest is None else shortest, longest)

    def with_length(self, length: int) -> "Task":
        """The same task with inputs of exactly ``length``; ValueError when the task has
        no variable length or cannot make that length (e.g. histogram beyond 9)."""
        if not self.length_varies:
            raise ValueError(self.fixed_length_reason())
        if not isinstance(length, int) or isinstance(length, bool) or length < 1:
            raise ValueError(f"length {length!r}: expected a positive integer")
        return dataclasses.replace(self, **self.length_params(length))

    def length_params(self, length: int) -> dict:
        """The params that make this task's inputs exactly ``length`` long."""
        return {self.length_field: length, self.min_length_field: length}

    def check_test_lengths(self, lo: int, hi: int) -> None:
        """ValueError unless the task can be scored at every length in lo..hi (inclusive)."""
        if not self.length_varies:
            raise ValueError(self.fixed_length_reason())
        if not 1 <= lo <= hi:
            raise ValueError(f"expected [lo, hi] with 1 <= lo <= hi, lengths in {self.length_unit}")
        for n in (lo, hi):  # every limit is an upper or a lower bound: the ends decide
            try:
                self.with_length(n)
            except ValueError as e:
                raise ValueError(f"task {self.name!r} cannot make length {n}; {e}") from None

    def fixed_length_reason(self) -> str:
        """Why the task cannot be tested at other lengths (see length_varies)."""
        return f"task {self.name!r} has no variable length"

    def test_lengths(self, test_range: Optional[Sequence[int]] = None, longer_by: int = 0,
                     block_size: Optional[int] = None) -> list[int]:
        """The lengths to score held-out prompts at: lo..hi of ``test_range`` when given
        (checked with check_test_lengths), else the training range plus up to ``longer_by``
        longer, stopping at what the task can make and, when given, ``block_size`` holds.
        [] for a task without a length."""
        span = self.length_range
        if span is None:
            return []
        if test_range is not None:
            lo, hi = test_range
            return list(range(lo, hi + 1))
        lengths = list(range(span[0], span[1] + 1))
        if not self.length_varies:
            return lengths
        for n in range(span[1] + 1, span[1] + longer_by + 1):
            try:
                longer = self.with_length(n)
            except ValueError:  # e.g. histogram counts stop at 9
                break
            if block_size is not None and longer.seq_len - 1 > block_size:
                break
            lengths.append(n)
        return lengths

    def length_variant(self, length: int) -> "Task":
        """The task whose held-out prompts are those of exactly ``length``: itself when it
        is trained on that length alone, else with_length(length)."""
        return self if self.length_range == (length, length) else self.with_length(length)

    def context_sizes(self, test_range: Optional[Sequence[int]] = None, longer_by: int = 0) -> tuple[int, int]:
        """(the shortest block_size that holds a training sequence, the one that also holds
        every test length's sequences): x is seq[:-1], so seq_len - 1 positions."""
        needed = self.seq_len - 1
        longest = [self.length_variant(n).seq_len - 1 for n in self.test_lengths(test_range, longer_by)]
        return needed, max([needed] + longest)

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
