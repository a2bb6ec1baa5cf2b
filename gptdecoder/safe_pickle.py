"""Reading a pickle of plain values only: dicts, lists, tuples, strings, bytes, numbers, booleans, None.

Unpickling an ordinary pickle can run code: a pickle names functions and classes
(``GLOBAL``), calls them (``REDUCE``, ``NEWOBJ``, ``INST``, ``OBJ``) and sets object state
(``BUILD``). ``load_plain`` admits none of that, in three layers:

1. the file's opcodes are listed first with ``pickletools.genops``, which parses and runs
   nothing: data that is not a whole pickle is refused, and so is any opcode outside
   ``PLAIN_OPCODES`` -- every one that can name a global, call, build an object, reach a
   persistent id, an extension code, an out-of-band buffer, a set or a bytearray; the
   opcodes are also replayed to measure how deeply tuples nest, and tuples nested more
   than ``MAX_TUPLE_DEPTH`` deep are refused (a dict key is hashed recursively in C:
   a million levels would crash the interpreter rather than raise);
2. only then is it unpickled, by ``PlainUnpickler``, whose ``find_class`` and
   ``persistent_load`` refuse everything, so no global is ever looked up even if the
   scan were wrong;
3. the result is walked and anything but the admitted types is refused.

Files larger than ``MAX_BYTES`` are refused unread. Every refusal is a one-line UserError.
Bytes are read from protocols 3 to 5 (protocols 0 to 2 pickle them through a global,
``_codecs.encode``, which is refused like any other).
"""
from __future__ import annotations

import io
import pickle
import pickletools
from pathlib import Path
from typing import Any, Union

from gptdecoder.errors import UserError

MAX_BYTES = 10 * 1024 * 1024
ADMITTED = "plain dicts, lists, tuples, strings, bytes, ints, floats, bools and None"
PLAIN_TYPES = (dict, list, tuple, str, bytes, int, float, bool, type(None))
PLAIN_OPCODES = frozenset({
    # framing and the stack
    "PROTO", "FRAME", "STOP", "MARK", "POP", "POP_MARK", "DUP",
    # the memo (shared references and cycles between plain values)
    "PUT", "BINPUT", "LONG_BINPUT", "MEMOIZE", "GET", "BINGET", "LONG_BINGET",
    # None, bools, ints, floats
    "NONE", "NEWTRUE", "NEWFALSE", "INT", "BININT", "BININT1", "BININT2", "LONG", "LONG1", "LONG4", "FLOAT",
    "BINFLOAT",
    # strings and bytes (protocol 0-2 STRINGs are str, decoded as ASCII)
    "STRING", "BINSTRING", "SHORT_BINSTRING", "UNICODE", "SHORT_BINUNICODE", "BINUNICODE", "BINUNICODE8",
    "BINBYTES", "SHORT_BINBYTES", "BINBYTES8",
    # lists, tuples, dicts
    "EMPTY_LIST", "APPEND", "APPENDS", "LIST", "EMPTY_TUPLE", "TUPLE", "TUPLE1", "TUPLE2", "TUPLE3",
    "EMPTY_DICT", "DICT", "SETITEM", "SETITEMS",
})
# what a refused opcode does, for the message
REFUSED = {
    "GLOBAL": "a global", "STACK_GLOBAL": "a global", "INST": "a class instance", "OBJ": "a class instance",
    "REDUCE": "a function call", "NEWOBJ": "a class instance", "NEWOBJ_EX": "a class instance",
    "BUILD": "an object's state", "EXT1": "an extension code", "EXT2": "an extension code",
    "EXT4": "an extension code", "PERSID": "a persistent id", "BINPERSID": "a persistent id",
    "EMPTY_SET": "a set", "ADDITEMS": "a set", "FROZENSET": "a frozenset", "BYTEARRAY8": "a bytearray",
    "NEXT_BUFFER": "an out-of-band buffer", "READONLY_BUFFER": "an out-of-band buffer",
}
_KEEP_STRINGS = frozenset({"MEMOIZE", "PUT", "BINPUT", "LONG_BINPUT", "FRAME"})  # leave the stack's top as it is
MAX_TUPLE_DEPTH = 100  # real data never comes near; Python compares tuples only ~1000 deep
_TUPLES = frozenset({"EMPTY_TUPLE", "TUPLE", "TUPLE1", "TUPLE2", "TUPLE3"})
_MEMO_PUTS = frozenset({"PUT", "BINPUT", "LONG_BINPUT", "MEMOIZE"})
_MEMO_GETS = frozenset({"GET", "BINGET", "LONG_BINGET"})


class Refused(pickle.UnpicklingError):
    """What ``PlainUnpickler`` raises instead of looking anything up."""


class PlainUnpickler(pickle.Unpickler):
    """An Unpickler that looks up no global and resolves no persistent id: plain values only."""

    def find_class(self, module: str, name: str) -> Any:
        raise Refused(f"it refers to the global {module}.{name}")

    def persistent_load(self, pid: Any) -> Any:
        raise Refused("it refers to a persistent id")


def load_plain(path: Union[str, Path], what: str = "pickle") -> Any:
    """The value pickled in ``path`` if it holds only plain values (see the module docstring).

    A missing, oversized, truncated or foreign file, or one holding anything else, is a
    one-line UserError beginning with ``what`` and the path; nothing in it runs.
    """
    path = Path(path)
    where = f"{what} {str(path)!r}"
    if not path.is_file():
        raise UserError(f"{where} does not exist")
    try:
        with open(path, "rb") as f:
            data = f.read(MAX_BYTES + 1)
    except OSError as e:
        raise UserError(f"cannot read {where}: {e.strerror or e}") from None
    if len(data) > MAX_BYTES:
        raise UserError(f"{where} is larger than {MAX_BYTES / 2**20:g} MB: refused unread")
    return loads_plain(data, where)


def loads_plain(data: bytes, where: str = "pickle") -> Any:
    """``load_plain`` for bytes already read; ``where`` begins every message."""
    _scan(data, where)
    try:
        value = PlainUnpickler(io.BytesIO(data)).load()
    except Refused as e:
        raise _refusal(where, str(e)) from None
    except Exception as e:  # what plain opcodes cannot build: an unhashable key, a stack underflow ...
        raise UserError(f"{where} is not a readable pickle ({type(e).__name__}: {_one_line(e)})") from None
    _check_plain(value, where)
    return value


def _refusal(where: str, reason: str) -> UserError:
    return UserError(f"{where} refused, unrun: {reason}; only {ADMITTED} are read")


def _scan(data: bytes, where: str) -> None:
    """Refuse ``data`` unless it is a whole pickle of PLAIN_OPCODES (naming the global a refused
    opcode would look up, when it can) whose tuples nest at most MAX_TUPLE_DEPTH deep.

    Two passes of ``pickletools.genops``, which parses and runs nothing: the first only
    parses, so a file that is not a pickle at all is called that rather than refused for
    whatever its first bytes spell; neither keeps the opcodes (a 10 MB file can hold ten
    million)."""
    if not data:
        raise UserError(f"{where} is empty, not a pickle")
    try:
        for _ in pickletools.genops(data):
            pass
    except Exception as e:  # genops: ValueError for truncated data or an unknown opcode
        raise UserError(f"{where} is not a readable pickle ({_one_line(e)})") from None
    strings: list[str] = []  # the strings just pushed: STACK_GLOBAL takes its module and name from them
    tuples = _TupleDepth()
    for opcode, arg, _ in pickletools.genops(data):
        name = opcode.name
        if name not in PLAIN_OPCODES:
            refused = REFUSED.get(name, "an opcode outside plain values")
            if name in ("GLOBAL", "INST") and isinstance(arg, str):
                refused += " " + ".".join(arg.split(" ", 1))
            elif name == "STACK_GLOBAL" and len(strings) == 2:
                refused += f" {strings[0]}.{strings[1]}"
            raise _refusal(where, f"it holds {refused} (opcode {name})")
        if isinstance(arg, str):  # a string pushed: the stack's top two strings are the last two
            strings = (strings + [arg])[-2:]
        elif name not in _KEEP_STRINGS:
            strings = []
        if tuples.step(opcode, arg) > MAX_TUPLE_DEPTH:
            raise _refusal(where, f"it nests tuples more than {MAX_TUPLE_DEPTH} deep (a dict key is hashed "
                                  f"recursively: much deeper ones would overflow the C stack)")


class _TupleDepth:
    """How deeply the tuples of a (plain) pickle nest, opcode by opcode: its stack, marks and
    memo replayed with, for each item, the depth of tuples in it (0: not a tuple; lists and
    dicts cannot be hashed, so only tuple-in-tuple nesting reaches hash's recursion). Exact for
    any pickle the unpickler accepts: a tuple is built once, from items on the stack, and never
    changes."""

    def __init__(self) -> None:
        self.stack: list[int] = []
        self.marks: list[int] = []  # where each open mark sits in the stack, as the unpickler keeps them
        self.memo: dict = {}

    def step(self, opcode: pickletools.OpcodeInfo, arg: Any) -> int:
        """Replay one opcode; the depth of the item it pushed (0 when it pushed none)."""
        stack, marks, name = self.stack, self.marks, opcode.name
        top = stack[-1] if stack else 0
        if name in _MEMO_PUTS:
            self.memo[len(self.memo) if name == "MEMOIZE" else arg] = top
            return 0
        popped: list[int] = []
        for kind in reversed(opcode.stack_before):
            if kind is pickletools.stackslice:  # everything above the topmost mark, and the mark
                at = marks.pop() if marks else 0
                popped = stack[at:]
                del stack[at:]
            elif kind is pickletools.markobject:
                continue  # taken with its slice
            elif marks and marks[-1] == len(stack):  # POP right after MARK removes the mark
                marks.pop()
            elif stack:
                popped.append(stack.pop())
        if name in _TUPLES:
            top = 1 + max(popped, default=0)
        elif name in _MEMO_GETS:
            top = self.memo.get(arg, 0)
        elif name != "DUP":
            top = 0
        for kind in opcode.stack_after:
            if kind is pickletools.markobject:
                marks.append(len(stack))
            else:
                stack.append(top)
        return top


def _check_plain(value: Any, where: str) -> None:
    """Refuse a value holding anything but the admitted types (iterative: deep nesting is fine;
    shared and cyclic references are visited once)."""
    seen: set[int] = set()
    stack = [value]
    while stack:
        item = stack.pop()
        if type(item) not in PLAIN_TYPES:
            raise _refusal(where, f"it holds a {type(item).__name__}")
        if isinstance(item, (dict, list, tuple)):
            if id(item) in seen:
                continue
            seen.add(id(item))
            stack.extend(item.keys() if isinstance(item, dict) else ())
            stack.extend(item.values() if isinstance(item, dict) else item)


def _one_line(error: Exception) -> str:
    return " ".join(str(error).split())[:200] or type(error).__name__
