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
from typing import Optional

from gptdecoder.commands import add_model_arguments, text_for
from gptdecoder.commands.compile import COMPILED_INFO
from gptdecoder.errors import UserError
from gptdecoder.lab.capture import example_views, most_varied
from gptdecoder.lab.explain import draw, measure, measure_text, text_views, text_windows
from gptdecoder.lab.prose import plain_words
from gptdecoder.lab.render import to_html, to_markdown
from gptdecoder.lab.report import ALSO_SVG, report_blocks, report_dict
from gptdecoder.lab.roles import Findings
from gptdecoder.runs import LoadedModel, load_model, task_for
from gptdecoder.storage import write_atomic


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_model_arguments(parser)
    parser.add_argument("--examples", type=int, default=500, help="held-out examples to score (default 500)")
    parser.add_argument("--out", help="where to write the report (default: PATH/explain; required for "
                                      "other models)")
    parser.add_argument("--text", help="for a model without a task (and no -c): the text to examine (default: "
                                       "the start of our text run's validation text)")
    parser.add_argument("--no-circuit", action="store_true",
                        help="leave out the circuit section (tracing it patches the model once per candidate)")


def examine_text(loaded: LoadedModel, text: Optional[str]) -> tuple[Findings, dict]:
    """(Findings, the attention maps' views) of a model without a task, on windows of text."""
    tokenizer = loaded.tokenizer
    if tokenizer is None:
        raise UserError(f"{loaded.description}: no tokenizer to read text with ({loaded.no_tokenizer}); "
                        f"pass -c CONFIG naming a task")
    data = text_windows(tokenizer.encode(text_for(loaded, text, n_chars=20_000)), loaded.model.config.block_size)
    labels = [tokenizer.decode([int(i)]) for i in data.x[0]]
    example = "".join(labels)
    findings = measure_text(loaded.model, data, repr(example[:60] + ("..." if len(example) > 60 else "")),
                            loaded.description)
    return findings, text_views(loaded.model, data, labels)


def run(args: argparse.Namespace) -> int:
    # matplotlib is imported only when the command runs (commands.files, lab.figures): cli.py
    # imports every command module to build its parser, and the other commands should not pay
    from gptdecoder.commands.files import save_figure

    if args.examples < 1:
        raise UserError(f"--examples {args.examples}: expected at least 1")
    loaded = load_model(args.run_dir, device="cpu")
    if args.out is None and loaded.kind != "run":
        raise UserError(f"{loaded.description}: pass --out DIR for the report (it goes into a run directory "
                        f"only when it is one of ours)")
    out = Path(args.out) if args.out else loaded.path / "explain"
    if loaded.task is None and args.config is None:  # a text model: the report's task-free part
        findings, views = examine_text(loaded, args.text)
        subject, what = "text", f"{findings.examples} {findings.examples_are}"
    else:
        task = task_for(loaded, args.config)
        examples = task.test_examples(args.examples, seed=0)
        if not examples:
            raise UserError(f"task {task.name!r} has no held-out examples to examine")
        compiled_json = loaded.path / COMPILED_INFO if loaded.kind == "run" else None
        compiled = json.loads(compiled_json.read_text()) if compiled_json is not None and compiled_json.is_file() else None
        findings = measure(loaded.model, task, examples, loaded.description, circuit=not args.no_circuit,
                           compiled=compiled)
        views = example_views(loaded.model, task, *examples[most_varied(examples)])
        subject, what = task.name, f"{len(examples)} held-out examples"
    pictures = draw(findings, loaded.model, views)
    images = {name: save_figure(fig, out / name).read_bytes() for name, fig in pictures.items()}
    for name in ALSO_SVG:
        if name in pictures:
            save_figure(pictures[name], out / Path(name).with_suffix(".svg"))
    blocks = report_blocks(findings)
    write_atomic(out / "report.md", to_markdown(blocks))
    write_atomic(out / "report.html", to_html(blocks, images, title=f"explain: {subject}"))
    write_atomic(out / "report.json", json.dumps(report_dict(findings), indent=2, allow_nan=False) + "\n")

    print(f"{subject}: {what}, {loaded.description}")
    print("\n".join(f"- {sentence}" for sentence in plain_words(findings)))
    print(f"wrote {out / 'report.html'} (self-contained), report.md, report.json and {len(images)} figures in {out}")
    return 0
