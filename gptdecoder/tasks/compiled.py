"""A compiled program's inputs and outputs, as a task the lab can examine.

A model compiled from RASP (gptdecoder/tracr.py) reads BOS and the input tokens and
answers at every input position at once -- not after the prompt as the synthetic tasks
do -- so ``build`` lays an example out as x = the prompt, y = the answer at each position
(nothing at BOS). The answers are Tracr's own: ``solve`` runs the compiled program
(``AssembledTransformerModel.apply``), so examining a compiled run needs the optional
``tracr`` extra, as compiling it did. Every prompt is held out: nothing is trained.
"""
from __future__ import annotations

import dataclasses
import functools
import itertools
import random
from typing import Iterator, Optional

from gptdecoder.tasks.base import Task

NOT_FOR = ("a compiled program answers at every position at once and is never trained: "
           "examine it with explain, ablate, pictures or the circuit finder")
MAX_LISTED = 2000  # prompts listed for the held-out set (all of them when there are fewer)


@functools.lru_cache(maxsize=8)
def _compiled(program: str, vocab: tuple, max_len: int):
    """(the compiled program, our vocabulary), compiled once per process."""
    from gptdecoder.tracr import compile_program, to_gpt

    compiled = compile_program(program, vocab, max_len)
    return compiled, to_gpt(compiled)[1]


@dataclasses.dataclass
class CompiledTask(Task):
    """The outputs of a Tracr-compiled library program at each position (see the module docstring).

    Symbols: Tracr's input tokens (BOS and its pad included), then each output value
    written "=value".
    """

    name = "compiled"
    program: str = "frac_prevs"
    vocab: Optional[list] = None  # the program's input tokens (None: the program's own)
    max_len: int = 5
    corruption = "one input token replaced by another"

    def __post_init__(self) -> None:
        super().__post_init__()
        self.compiled_key = (self.program, tuple(self.vocab or ()), self.max_len)  # the cache's key, as given
        compiled, vocab = _compiled(*self.compiled_key)
        self.vocab = list(compiled.vocab)
        self.compiled_vocab = vocab
        self.symbols = vocab.symbols

    @property
    def seq_len(self) -> int:
        return self.max_len + 2  # BOS + max_len inputs read; one more, as for prompt + answer

    def is_test(self, prompt: list[int]) -> bool:
        return True  # nothing is trained on a compiled program

    def sample_prompt(self, rng: random.Random) -> list[int]:
        tokens = [rng.choice(self.vocab) for _ in range(rng.randint(1, self.max_len))]
        return self.compiled_vocab.input_ids(tokens)

    def all_prompts(self) -> Optional[Iterator[list[int]]]:
        total = sum(len(self.vocab) ** n for n in range(1, self.max_len + 1))
        if total > MAX_LISTED:
            return None
        return (self.compiled_vocab.input_ids(seq) for n in range(1, self.max_len + 1)
                for seq in itertools.product(self.vocab, repeat=n))

    def solve(self, prompt: list[int]) -> list[int]:
        """Tracr's output at each input position, as our output tokens (a numerical value as
        the nearest value token)."""
        from gptdecoder.tracr import BOS, tracr_output

        compiled, vocab = _compiled(*self.compiled_key)
        inputs = [vocab.inputs.index(t) for t in self.vocab]
        if not prompt or prompt[0] != vocab.inputs.index(BOS) or any(t not in inputs for t in prompt[1:]):
            raise ValueError(f"a compiled program's prompt is BOS and then input tokens {self.vocab}: "
                             f"got {self.format(prompt)}")
        outputs = tracr_output(compiled, [vocab.inputs[t] for t in prompt[1:]])
        if vocab.numerical:
            return [vocab.value_id(min(vocab.values, key=lambda v: abs(float(v) - float(out)))) for out in outputs]
        return [vocab.value_id(out) for out in outputs]

    def build(self, prompt: list[int], answer: list[int]) -> tuple[list[int], list[int], list[int]]:
        """x = BOS and the inputs; y = the answer at each input position (none at BOS)."""
        return list(prompt), [-1] + list(answer), [0] + [1] * len(answer)

    def corruptible_positions(self, prompt: list[int], answer: list[int]) -> list[int]:
        """Any input token (not BOS): every output may depend on every input before it."""
        return list(range(1, len(prompt)))

    def source_tokens(self) -> list[int]:
        """The program's input tokens, as our ids: what ``corrupt`` may put at a position."""
        return [self.compiled_vocab.inputs.index(t) for t in self.vocab]
