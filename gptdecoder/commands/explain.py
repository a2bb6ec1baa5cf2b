"""``python -m gptdecoder explain --run PATH``: one report on how a trained task model works.

It measures, on the task's held-out prompts: the exact match; what zero-ablating each
head costs; what each head does (previous-token, duplicate-token and induction scores on
repeated random tokens and on the task's own sequences, and the task's source score,
each beside what uniform attention would score); where the answer becomes readable
(logit lens); which components write it (direct logit attribution); and the attention of
the most important heads on one example; and the circuit: the edges of the computational
graph that keep 90% of the logit difference between clean and corrupted prompts
(gptdecoder.lab.circuits; ``--no-circuit`` leaves it out). Then it writes, into DIR:

    report.md     the report, with the figures linked
    report.html   the same as one self-contained page (figures embedded, no script, no network)
    report.json   every number the report states
    *.png         the figures (circuit.svg too)

The measurements and figures come from gptdecoder.lab.explain, what they mean from
gptdecoder.lab.roles, the sentences from gptdecoder.lab.prose, the sections from
gptdecoder.lab.report and the formats from gptdecoder.lab.render (pure functions, tested
there); this module only loads the model, runs them, writes the files and prints.

``--run`` is a run directory, a Hugging Face GPT-2 directory or a nanoGPT checkpoint, as
for ``ablate``: a task run brings its task and receives the report in PATH/explain; any
other model takes the task from ``-c CONFIG`` and needs ``--out``.
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

from gptdecoder.commands import add_model_arguments
from gptdecoder.commands.compile import COMPILED_INFO
from gptdecoder.errors import UserError
from gptdecoder.lab.capture import most_varied
from gptdecoder.lab.explain import draw, measure
from gptdecoder.lab.prose import plain_words
from gptdecoder.lab.render import to_html, to_markdown
from gptdecoder.lab.report import ALSO_SVG, report_blocks, report_dict
from gptdecoder.runs import load_model, task_for
from gptdecoder.storage import write_atomic


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_model_arguments(parser)
    parser.add_argument("--examples", type=int, default=500, help="held-out examples to score (default 500)")
    parser.add_argument("--out", help="where to write the report (default: PATH/explain; required for "
                                      "other models)")
    parser.add_argument("--no-circuit", action="store_true",
                        help="leave out the circuit section (tracing it patches the model once per candidate)")


def run(args: argparse.Namespace) -> int:
    # matplotlib is imported only when the command runs (commands.files, lab.figures): cli.py
    # imports every command module to build its parser, and the other commands should not pay
    from gptdecoder.commands.files import save_figure

    if args.examples < 1:
        raise UserError(f"--examples {args.examples}: expected at least 1")
    loaded = load_model(args.run_dir, device="cpu")
    task = task_for(loaded, args.config)
    if args.out is None and loaded.kind != "run":
        raise UserError(f"{loaded.description}: pass --out DIR for the report (it goes into a run directory "
                        f"only when it is one of ours)")
    out = Path(args.out) if args.out else loaded.path / "explain"
    examples = task.test_examples(args.examples, seed=0)
    if not examples:
        raise UserError(f"task {task.name!r} has no held-out examples to examine")

    compiled_json = loaded.path / COMPILED_INFO if loaded.kind == "run" else None
    compiled = json.loads(compiled_json.read_text()) if compiled_json is not None and compiled_json.is_file() else None
    findings = measure(loaded.model, task, examples, loaded.description, circuit=not args.no_circuit,
                       compiled=compiled)
    pictures = draw(findings, loaded.model, task, examples[most_varied(examples)])
    images = {name: save_figure(fig, out / name).read_bytes() for name, fig in pictures.items()}
    for name in ALSO_SVG:
        if name in pictures:
            save_figure(pictures[name], out / Path(name).with_suffix(".svg"))
    blocks = report_blocks(findings)
    write_atomic(out / "report.md", to_markdown(blocks))
    write_atomic(out / "report.html", to_html(blocks, images, title=f"explain: {task.name}"))
    write_atomic(out / "report.json", json.dumps(report_dict(findings), indent=2, allow_nan=False) + "\n")

    print(f"{task.name}: {len(examples)} held-out examples, {loaded.description}")
    print("\n".join(f"- {sentence}" for sentence in plain_words(findings)))
    print(f"wrote {out / 'report.html'} (self-contained), report.md, report.json and {len(images)} figures in {out}")
    return 0
