"""write_atomic: the file appears whole, with ordinary permissions, or the old one stays."""
from __future__ import annotations

import os

import pytest

from gptdecoder.storage import write_atomic


def test_writes_text_and_bytes_with_the_usual_permissions(tmp_path):
    umask = os.umask(0o022)
    try:
        path = write_atomic(tmp_path / "sub" / "a.txt", "héllo")
        assert path.read_text(encoding="utf-8") == "héllo"
        assert (path.stat().st_mode & 0o777) == 0o644  # not mkstemp's private 0600
        write_atomic(path, b"\x00\x01")
        assert path.read_bytes() == b"\x00\x01"
    finally:
        os.umask(umask)
    assert sorted(p.name for p in path.parent.iterdir()) == ["a.txt"]  # no temporary file left


def test_a_failed_write_keeps_the_old_file(tmp_path):
    path = write_atomic(tmp_path / "results.json", "old")

    with pytest.raises(TypeError):
        write_atomic(path, 12345)  # not bytes or text: fails while writing
    assert path.read_text() == "old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["results.json"]
