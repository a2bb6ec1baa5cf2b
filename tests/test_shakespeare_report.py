"""benchmarks/shakespeare.py's outputs: the table, the plot and the README section, written
again from a results.json (``--redraw``) exactly as after a run; a README without the
markers is refused before anything is written."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from conftest import HANG_TIMEOUT, ROOT

SCRIPT = ROOT / "benchmarks" / "shakespeare.py"


def report() -> dict:
    """What a 2-seed run of nanoGPT, our GPT-2 recipe and the fast recipe writes (figures made up)."""
    def ours(wall: float, loss: float, reached: bool = True) -> dict:
        return {"wall_seconds": wall, "val_loss": loss, "iters": 900, "train_seconds": wall - 5,
                "tokens_per_second": 27000, "reached": reached, "other_cores": [0.01],
                "budget_val_loss": loss - 0.25, "budget_train_seconds": 60.0, "budget_iters": 1800,
                "budget_off_plan": False, "budget_seconds_to_target": wall - 10,
                "curve": [[5.0, 4.2], [20.0, 2.0], [wall - 10, 1.88], [65.0, loss - 0.25]]}

    nano = {"wall_seconds": 80.0, "val_loss": 1.898, "iters": 2000, "train_seconds": 74.0,
            "tokens_per_second": 20500, "budget_val_loss": 1.898, "budget_train_seconds": 74.0,
            "curve": [[10.0, 2.5], [74.0, 1.886]], "other_cores": [0.01]}
    return {
        "target": 1.886, "budget": 60.0, "seeds": [1337, 1338], "overrides": [], "val_tokens": 111539,
        "recipes": [{"name": "nanogpt", "label": "nanoGPT baby GPT", "config": None, "overrides": []},
                    {"name": "gpt2", "label": "ours, GPT-2", "config": "configs/shakespeare_char.yaml", "overrides": []},
                    {"name": "no-muon", "label": "fast, AdamW everywhere", "config": "x", "overrides": []}],
        "runs": {"nanogpt": [nano, dict(nano, wall_seconds=82.0)],
                 "gpt2": [ours(38.0, 1.85), ours(40.0, 1.87)],
                 "no-muon": [ours(20.0, 2.2, reached=False), ours(21.0, 1.88)]},
        "command": "python benchmarks/shakespeare.py --seeds 2",
    }


def redraw(out: Path, *extra: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(SCRIPT), "--redraw", "--out", str(out), *extra], cwd=ROOT,
                          capture_output=True, text=True, timeout=HANG_TIMEOUT)


def a_results_dir_and_readme(tmp_path: Path, readme_text: str) -> tuple[Path, Path]:
    out = tmp_path / "docs"
    out.mkdir()
    (out / "results.json").write_text(json.dumps(report()))
    readme = tmp_path / "README.md"
    readme.write_text(readme_text)
    return out, readme


def test_redraw_writes_table_plot_and_readme_section(tmp_path):
    out, readme = a_results_dir_and_readme(
        tmp_path, "# Title\n\nbefore\n<!-- shakespeare:start -->\nold table\n<!-- shakespeare:end -->\nafter\n")
    proc = redraw(out, "--readme", str(readme))
    assert proc.returncode == 0, proc.stderr

    table = (out / "results.md").read_text()
    rows = {line.split(" | ")[0].strip("| "): line.split(" | ") for line in table.splitlines()
            if line.startswith("| ") and "---" not in line and "recipe" not in line}
    assert rows["ours, GPT-2"][1] == "39.0 ± 1.4 s"  # mean ± std over the seeds
    assert rows["ours, GPT-2"][2] == f"{39.0 / 81.0:.2f}"  # against nanoGPT's mean wall time
    assert rows["fast, AdamW everywhere"][1] == "not reached (1 of 2 seeds)"
    assert rows["fast, AdamW everywhere"][2] == "—"
    assert "Regenerate: `python benchmarks/shakespeare.py --seeds 2`" in table
    assert (out / "val_loss_vs_time.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"

    text = readme.read_text()
    assert text.startswith("# Title\n\nbefore\n<!-- shakespeare:start -->\n")
    assert text.endswith("<!-- shakespeare:end -->\nafter\n")
    assert "old table" not in text and "| ours, GPT-2 | 39.0 ± 1.4 s |" in text


def test_a_readme_without_markers_is_refused_before_anything_is_written(tmp_path):
    out, readme = a_results_dir_and_readme(tmp_path, "# no markers here\n")
    proc = redraw(out, "--readme", str(readme))
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and "shakespeare:start" in lines[0]
    assert readme.read_text() == "# no markers here\n"
    assert sorted(p.name for p in out.iterdir()) == ["results.json"]


def test_redraw_without_results_is_one_line(tmp_path):
    proc = redraw(tmp_path / "nothing-here")
    assert proc.returncode == 2
    assert proc.stderr.strip().startswith("error: cannot read") and len(proc.stderr.strip().splitlines()) == 1
