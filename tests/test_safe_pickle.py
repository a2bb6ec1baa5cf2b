"""gptdecoder.safe_pickle: plain values are read, anything else is refused with one line and never run."""
from __future__ import annotations

import functools
import io
import os
import pickle
from pathlib import Path

import pytest

from gptdecoder import safe_pickle
from gptdecoder.errors import UserError
from gptdecoder.safe_pickle import MAX_BYTES, PlainUnpickler, load_plain, loads_plain

PROTOCOLS = range(pickle.HIGHEST_PROTOCOL + 1)
META = {"vocab_size": 3, "itos": {0: "\n", 1: "a", 2: "é"}, "stoi": {"\n": 0, "a": 1, "é": 2}}


class System:
    """Unpickling this would call os.system."""

    def __reduce__(self):
        return (os.system, ("echo hacked",))


class Eval:
    """Unpickling this would call eval."""

    def __reduce__(self):
        return (eval, ("print('hacked')",))


class Exec:
    """Unpickling this would write the file named by $PWNED."""

    def __reduce__(self):
        return (exec, ("import pathlib; pathlib.Path(__import__('os').environ['PWNED']).write_text('ran')",))


class Instance:
    def __init__(self):
        self.chars = "abc"


@pytest.fixture
def marker(tmp_path, monkeypatch) -> Path:
    path = tmp_path / "pwned"
    monkeypatch.setenv("PWNED", str(path))
    return path


def refused(data: bytes, *fragments: str) -> str:
    with pytest.raises(UserError) as info:
        loads_plain(data, "meta.pkl")
    message = str(info.value)
    assert "\n" not in message and message.startswith("meta.pkl"), message
    for fragment in fragments:
        assert fragment in message, message
    return message


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_plain_values_are_read_in_every_protocol(protocol):
    value = {**META, "more": [(1, -2**70, 2.5, None, True, False), {"nested": ["x" * 300]}]}
    assert loads_plain(pickle.dumps(value, protocol=protocol)) == value
    if protocol >= 3:  # earlier protocols pickle bytes through a global (_codecs.encode): refused
        assert loads_plain(pickle.dumps([b"\x00\xff" * 200, b""], protocol=protocol)) == [b"\x00\xff" * 200, b""]


def test_shared_and_cyclic_references_are_plain_values_too():
    shared = ["x"]
    cyclic: list = []
    cyclic.append(cyclic)
    value = loads_plain(pickle.dumps({"a": shared, "b": shared, "c": cyclic}))
    assert value["a"] is value["b"] and value["c"][0] is value["c"]


@pytest.mark.parametrize("protocol", PROTOCOLS)
@pytest.mark.parametrize("payload, name", [(System(), f"{os.name}.system"), (Eval(), ".eval"), (Exec(), ".exec")])
def test_a_pickle_that_would_run_code_is_refused_unrun(payload, name, protocol, marker, capfd):
    data = pickle.dumps({"vocab_size": 3, "itos": payload}, protocol=protocol)
    refused(data, "refused, unrun", "it holds a global", name, "only plain dicts, lists, tuples")
    out, err = capfd.readouterr()  # file-descriptor level: a shell started by os.system would print here
    assert "hacked" not in out + err and not marker.exists()


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_a_class_instance_is_refused(protocol):
    refused(pickle.dumps(Instance(), protocol=protocol), "refused, unrun", "it holds a global")


@pytest.mark.parametrize("value, protocol, what", [
    ({1, 2}, 4, "a set (opcode EMPTY_SET)"),
    (frozenset({1}), 4, "a frozenset (opcode FROZENSET)"),
    (bytearray(b"x"), 5, "a bytearray (opcode BYTEARRAY8)"),
    (b"x", 2, "a global _codecs.encode"),
    ({1, 2}, 2, "a global __builtin__.set"),
])
def test_containers_outside_the_plain_ones_are_refused(value, protocol, what):
    refused(pickle.dumps(value, protocol=protocol), f"it holds {what}")


@pytest.mark.parametrize("data, what", [
    (b"Pid\n.", "a persistent id (opcode PERSID)"),
    (b"\x80\x02N\x81.", "a class instance (opcode NEWOBJ)"),
    (b"\x80\x02NNR.", "a function call (opcode REDUCE)"),
    (b"\x80\x02}NbN.", "an object's state (opcode BUILD)"),
    (b"\x80\x02\x82\x01.", "an extension code (opcode EXT1)"),
    (b"\x80\x05\x97.", "an out-of-band buffer (opcode NEXT_BUFFER)"),
    (b"(ios\nsystem\n.", "a class instance os.system (opcode INST)"),
])
def test_every_opcode_that_reaches_beyond_plain_values_is_refused(data, what):
    refused(data, f"it holds {what}")


@pytest.mark.parametrize("depth", [100, 101, 100_000])
def test_tuples_nested_too_deep_to_hash_are_refused(depth):
    """A tuple key is hashed recursively in C, with no depth check: a million levels would
    overflow the C stack (a crash, not an error). Written opcode by opcode, as {((...),): 1}."""
    data = b"\x80\x02}" + b")" + b"\x85" * (depth - 1) + b"K\x01s."
    via_memo = b"\x80\x02}" + b")q\x00" + b"0h\x00\x85q\x00" * (depth - 1) + b"K\x01s."  # each level from the memo
    for pickled in (data, via_memo):
        if depth <= safe_pickle.MAX_TUPLE_DEPTH:
            assert loads_plain(pickled) == {functools.reduce(lambda t, _: (t,), range(depth - 1), ()): 1}
        else:
            refused(pickled, "it nests tuples more than 100 deep")


def test_lists_nested_deeply_are_plain_values():
    depth = 20_000  # deeper than any recursive walk goes
    nested = loads_plain(b"\x80\x02" + b"]" * depth + b"a" * (depth - 1) + b".")
    for _ in range(depth - 1):
        (nested,) = nested
    assert nested == []


def test_the_unpickler_itself_looks_up_no_global_and_no_persistent_id():
    """The second layer, on its own (the opcode scan would refuse these first)."""
    with pytest.raises(pickle.UnpicklingError, match="global posix.system|global nt.system"):
        PlainUnpickler(io.BytesIO(pickle.dumps(System(), protocol=5))).load()
    with pytest.raises(pickle.UnpicklingError, match="persistent id"):
        PlainUnpickler(io.BytesIO(b"\x80\x02K\x01Q.")).load()


@pytest.mark.parametrize("data, message", [
    (pickle.dumps(META, protocol=4)[:-7], "is not a readable pickle"),
    (pickle.dumps(META, protocol=0)[:-1], "is not a readable pickle"),
    (b"vocab_size = 65\n", "is not a readable pickle"),
    (b"\x89PNG\r\n\x1a\n", "is not a readable pickle"),
    (b"", "is empty, not a pickle"),
    (b"}]K\x01s.", "is not a readable pickle (TypeError: unhashable type: 'list')"),
    (b"\x80\x02.", "is not a readable pickle"),  # STOP with nothing on the stack
])
def test_what_is_not_a_whole_pickle_is_one_clear_line(data, message):
    refused(data, message)


def test_files(tmp_path, monkeypatch):
    path = tmp_path / "meta.pkl"
    path.write_bytes(pickle.dumps(META))
    assert load_plain(path) == META
    with pytest.raises(UserError, match=r"^nanoGPT vocabulary '.*nothere.pkl' does not exist$"):
        load_plain(tmp_path / "nothere.pkl", "nanoGPT vocabulary")
    with pytest.raises(UserError, match="does not exist"):
        load_plain(tmp_path)  # a directory
    monkeypatch.setattr(safe_pickle, "MAX_BYTES", 100)
    path.write_bytes(pickle.dumps(["x" * 100]))
    with pytest.raises(UserError, match=r"larger than .* MB: refused unread"):
        load_plain(path)
    assert MAX_BYTES == 10 * 1024 * 1024
