"""What a grid's results say: rows, spreads over seeds, accuracy at longer lengths, and the
tables written from them (results.json, results.csv, results.md).

``RESULT_FIELDS`` is the one list of what the grid keeps of each run's results.json:
``compact_results`` keeps those fields in a cell's record, ``row_of`` turns a record
into a row with them as columns, and results.csv has the same columns in the same
order. A new field is added there, once.

A row is *learned* when its held-out test accuracy (on the training distribution)
reaches the bench's ``learned_threshold``: a model that did not learn its training
lengths says nothing about longer ones, so the accuracy at 1.5x and 2x the longest
training length is over the seeds that learned, with their count shown.

Nothing here trains, prints or draws: the command writes figures from ``length_points``.
"""
from __future__ import annotations

import csv
import io
import json
import statistics
from pathlib import Path
from typing import Iterable, Optional, Sequence

from gptdecoder.bench.cells import Cell, canonical, short
from gptdecoder.lab.render import json_ready
from gptdecoder.storage import write_atomic

# what the grid keeps of a task run's results.json -- in a cell's record, as row columns, as
# CSV columns, in this order. The *_by_length fields map str(test length) to an accuracy.
RESULT_FIELDS = (
    "test_accuracy",  # held-out exact match on the training distribution
    "test_token_accuracy",  # the same held-out set, per token
    "test_accuracy_dense",  # random positions only: test_accuracy with positions 0..T-1
    "train_accuracy",
    "accuracy_by_length",  # exact match per test length (random positions: positions sampled as trained)
    "token_accuracy_by_length",  # share of answer tokens right, per test length
    "accuracy_by_length_dense",  # random positions only: exact match with positions 0..T-1
    "token_accuracy_by_length_dense",  # random positions only: per-token accuracy with positions 0..T-1
    "train_max_length",  # the longest training length
    "train_seconds",
    "params",
    "iters",
    "final_loss",
)
BY_LENGTH_FIELDS = tuple(field for field in RESULT_FIELDS if field.endswith(("_by_length", "_by_length_dense")))
# the length table's accuracies: (positions, exact-match field, per-token field)
POSITIONS = (("as trained", "accuracy_by_length", "token_accuracy_by_length"),
             ("dense", "accuracy_by_length_dense", "token_accuracy_by_length_dense"))
FACTORS = (1.5, 2.0)  # multiples of the longest training length that results.md reports


def row_columns(axes: Iterable[str]) -> list[str]:
    """The columns of a row (results.json, results.csv), in order."""
    return ["base", *axes, "seed", "status", "error", "learned", *RESULT_FIELDS, "cell"]


# -- a run's results -> a cell's record -> a row ---------------------------------------------------


def compact_results(results: dict) -> dict:
    """What the grid keeps of a run's results.json (the whole file stays in the run directory):
    RESULT_FIELDS, the by-length ones as {str(length): accuracy} in length order (None where
    the run has none: older runs, and the _dense ones for models without random positions)."""
    compact = {field: results.get(field) for field in RESULT_FIELDS}
    for field in BY_LENGTH_FIELDS:
        compact[field] = by_length(results.get(field))
    accuracy, compact["train_max_length"] = length_results(results)
    compact["accuracy_by_length"] = {str(n): a for n, a in accuracy.items()}
    return compact


def by_length(value: Optional[dict]) -> Optional[dict[str, float]]:
    """{str(length): accuracy} sorted by length, or None for a field the run does not have."""
    if value is None:
        return None
    return {str(n): float(a) for n, a in sorted(((int(n), a) for n, a in value.items()))}


def length_results(results: dict) -> tuple[dict[int, float], Optional[int]]:
    """({test length: exact match}, longest training length) from a task run's results.json.

    Reads ``accuracy_by_length`` / ``train_max_length`` where the run has them. Runs
    written before those fields existed have ``length_generalization`` (the lengths
    beyond training only) and ``task_params["length"]``: then the training length's
    entry is the held-out ``test_accuracy`` (over all training lengths when they vary).
    """
    if "accuracy_by_length" in results:
        accuracy = {int(n): float(a) for n, a in (results["accuracy_by_length"] or {}).items()}
        train_max = results.get("train_max_length")
    else:
        accuracy = {int(n): float(a) for n, a in (results.get("length_generalization") or {}).items()}
        train_max = (results.get("task_params") or {}).get("length")
        if isinstance(train_max, int) and results.get("test_accuracy") is not None:
            accuracy.setdefault(train_max, float(results["test_accuracy"]))
    return dict(sorted(accuracy.items())), train_max if isinstance(train_max, int) else None


def row_of(cell: Cell, record: dict, learned_threshold: float) -> dict:
    """One results.csv/json row (``row_columns``): the cell's labels *as the bench file now
    names them* (not as they were when it trained), its record's status and numbers, and
    whether it learned (test_accuracy >= learned_threshold; None when not ok)."""
    results = record.get("results") or {}
    status = record.get("status", "failed")
    accuracy = results.get("test_accuracy")
    learned = accuracy >= learned_threshold if status == "ok" and accuracy is not None else None
    known = {"base": cell.base, **cell.values, "seed": cell.seed, "status": status,
             "error": record.get("error", ""), "learned": learned, "cell": cell.key}
    return {column: known[column] if column in known else results.get(column) for column in row_columns(cell.values)}


# -- labels ---------------------------------------------------------------------------------------


def variant_label(values: dict) -> str:
    """The axis values of a cell as a short label: "model.d_model=32, model.n_layer=2"."""
    return ", ".join(f"{k}={short(v)}" for k, v in values.items()) or "base config"


def base_labels(bases: Sequence[str]) -> dict[str, str]:
    """Short names for the bases: a config file's stem (its path where two stems are the
    same); a base named in the bench file keeps its name."""
    def stem(base: str) -> str:
        return Path(base).stem if base.endswith((".yaml", ".yml")) else base

    stems = {b: stem(b) for b in bases}
    return stems if len(set(stems.values())) == len(stems) else {b: b for b in bases}


# -- summaries over seeds -----------------------------------------------------------------------


def groups(rows: Sequence[dict], axes: Sequence[str]) -> dict[tuple, list[dict]]:
    """Rows grouped by base + axis values (the seeds of one variant), in grid order."""
    grouped: dict[tuple, list[dict]] = {}
    for row in rows:
        key = (row["base"], *(canonical(row[a]) for a in axes))
        grouped.setdefault(key, []).append(row)
    return grouped


def spread(values: Iterable[float]) -> Optional[dict]:
    """mean, sample std (0 for one value), min, max and n of the values; None for none."""
    values = [float(v) for v in values]
    if not values:
        return None
    std = statistics.stdev(values) if len(values) > 1 else 0.0
    return {"mean": statistics.mean(values), "std": std, "min": min(values), "max": max(values), "n": len(values)}


def summarise(rows: Sequence[dict], axes: Sequence[str]) -> list[dict]:
    """One entry per variant (base + axis values): seeds run, ok, judged (ok with a test
    accuracy) and learned; spreads of test accuracy and training seconds over the ok seeds;
    parameters; and ``at_1.5x`` / ``at_2x``: {by-length field: ``at_length``} over the
    seeds that learned."""
    summary = []
    for group in groups(rows, axes).values():
        ok = [r for r in group if r["status"] == "ok"]
        learned = [r for r in ok if r["learned"]]
        first = group[0]
        entry = {
            "base": first["base"],
            "values": {a: first[a] for a in axes},
            "seeds": len(group),
            "ok": len(ok),
            "judged": sum(r["learned"] is not None for r in ok),
            "learned": len(learned),
            "test_accuracy": spread(r["test_accuracy"] for r in ok if r["test_accuracy"] is not None),
            "train_seconds": spread(r["train_seconds"] for r in ok if r["train_seconds"] is not None),
            "params": next((r["params"] for r in group if r["params"] is not None), None),
        }
        for factor in FACTORS:
            entry[f"at_{factor:g}x"] = {field: at_length(learned, factor, field) for field in BY_LENGTH_FIELDS}
        summary.append(entry)
    return summary


def did_not_learn(entry: dict) -> bool:
    """A variant none of whose judged seeds learned its training lengths."""
    return entry["judged"] > 0 and entry["learned"] == 0


def at_length(rows: Sequence[dict], factor: float, field: str = "accuracy_by_length") -> Optional[dict]:
    """``field`` (a by-length accuracy) at ``factor`` x the longest training length, over the
    rows' seeds: at the longest tested length <= that target (``length`` says which); None
    where no row has that field."""
    per_seed, lengths = [], set()
    for row in rows:
        accuracy = {int(n): a for n, a in (row[field] or {}).items()}
        train_max = row["train_max_length"]
        if not accuracy or train_max is None:
            continue
        tested = [n for n in accuracy if n <= factor * train_max]
        if not tested:
            continue
        length = max(tested)
        lengths.add(length)
        per_seed.append(accuracy[length])
    if not per_seed:
        return None
    result = spread(per_seed)
    result["length"] = max(lengths) if len(lengths) == 1 else f"{min(lengths)}-{max(lengths)}"
    return result


def length_points(rows: Sequence[dict], axes: Sequence[str]) -> list[dict]:
    """For the length figure: one entry per variant with its base, label, longest training
    length, {test length: [exact match of each seed drawn]} and ``learned``.

    The seeds drawn are those that learned; a variant that learned on no seed is drawn
    from all its ok seeds with ``learned`` False (the figure marks it) and "(did not
    learn)" in its label; one that learned on some seeds says how many in its label.
    """
    points = []
    for group in groups(rows, axes).values():
        ok = [r for r in group if r["status"] == "ok"]
        learned = [r for r in ok if r["learned"]]
        judged = [r for r in ok if r["learned"] is not None]
        accuracy: dict[int, list[float]] = {}
        for row in learned or ok:
            for n, a in (row["accuracy_by_length"] or {}).items():
                accuracy.setdefault(int(n), []).append(float(a))
        label = variant_label({a: group[0][a] for a in axes})
        if judged and not learned:
            label += " (did not learn)"
        elif len(learned) < len(judged):
            label += f" ({len(learned)}/{len(judged)} learned)"
        train_max = next((r["train_max_length"] for r in ok if r["train_max_length"] is not None), None)
        points.append({"base": group[0]["base"], "variant": label, "train_max_length": train_max,
                       "accuracy": dict(sorted(accuracy.items())), "learned": bool(learned) or not judged})
    return points


# -- the tables -----------------------------------------------------------------------------------


def write_tables(rows: Sequence[dict], axes: Sequence[str], out: Path, bench_path: str,
                 learned_threshold: float) -> None:
    """results.json, results.csv and results.md into ``out``, each written atomically."""
    write_atomic(out / "results.json", results_json(rows))
    write_atomic(out / "results.csv", results_csv(rows, axes))
    write_atomic(out / "results.md", results_markdown(rows, axes, bench_path, learned_threshold))


def results_json(rows: Sequence[dict]) -> str:
    """The rows as strict JSON: a NaN or infinite number (a diverged run's loss) is null."""
    return json.dumps(json_ready(list(rows)), indent=2, default=str, allow_nan=False) + "\n"


def results_csv(rows: Sequence[dict], axes: Sequence[str]) -> str:
    """The rows as CSV (``row_columns``); dicts and lists (by-length accuracies, list-valued
    axes) as JSON, None as an empty field."""
    text = io.StringIO()
    writer = csv.DictWriter(text, fieldnames=row_columns(axes), lineterminator="\n")
    writer.writeheader()
    for row in rows:
        writer.writerow({k: json.dumps(v) if isinstance(v, (dict, list)) else ("" if v is None else v)
                         for k, v in row.items()})
    return text.getvalue()


def results_markdown(rows: Sequence[dict], axes: Sequence[str], bench_path: str, learned_threshold: float) -> str:
    """results.md: a table of held-out accuracy per variant, the length-generalisation table
    (seeds that learned only), then the failed cells and the cells not trained yet."""
    summary = summarise(rows, axes)
    labels = base_labels(list(dict.fromkeys(r["base"] for r in rows)))
    by_status = {status: [r for r in rows if r["status"] == status] for status in ("ok", "failed", "missing")}
    counts = f"{len(rows)} cells, {len(by_status['ok'])} ok, {len(by_status['failed'])} failed"
    if by_status["missing"]:
        counts += f", {len(by_status['missing'])} not trained yet"
    threshold = f"{learned_threshold * 100:g}%"
    lines = [f"# Benchmark{' ' + bench_path if bench_path else ''}", "",
             f"{counts}. Held-out exact match over the seeds of each variant: mean ± sample std (± 0 with one "
             "seed), then min–max; failed cells are left out of the numbers. *learned*: seeds whose held-out "
             f"exact match reached {threshold} (learned_threshold), out of those that finished.", ""]
    lines += _table(["task", *axes, "seeds ok", "learned", "test accuracy", "min–max", "train s", "params"], [
        [labels[e["base"]], *(_cell(e["values"][a]) for a in axes), f"{e['ok']}/{e['seeds']}",
         f"{e['learned']}/{e['judged']}" if e["judged"] else "—", _percent(e["test_accuracy"]),
         f"{e['test_accuracy']['min']:.1%}–{e['test_accuracy']['max']:.1%}" if e["test_accuracy"] else "—",
         f"{e['train_seconds']['mean']:.1f}" if e["train_seconds"] else "—",
         f"{e['params']:,}" if e["params"] is not None else "—"]
        for e in summary])
    lines += ["", "## Length generalisation", "", *_length_table(summary, axes, labels, threshold)]
    for status, title in (("failed", "Failed cells"), ("missing", "Not trained yet")):
        if by_status[status]:
            lines += ["", f"## {title}", ""]
            lines += _table(["task", *axes, "seed", "error"], [
                [labels[r["base"]], *(_cell(r[a]) for a in axes), str(r["seed"]), _cell(r["error"])]
                for r in by_status[status]])
    return "\n".join(lines) + "\n"


def _length_table(summary: Sequence[dict], axes: Sequence[str], labels: dict[str, str], threshold: str) -> list[str]:
    """What the numbers are, then one line per variant (two for a variant with dense
    results: as trained, then dense): exact and per-token accuracy at each factor."""
    notes = [f"Over the seeds that learned their training lengths (held-out exact match ≥ {threshold}): exact "
             "match and per-token accuracy (the share of answer tokens right) at 1.5× and 2× the longest "
             "training length, mean ± std, with the number of seeds that learned. Where that length was not "
             "tested, the longest tested length below it is used: `@N` names the length each number is measured "
             "at (`@N` at or below the training length means no longer input was tested there; raise "
             "eval.longer_by). *did not learn*: no seed learned its training lengths. — : no length data.", ""]
    dense = any(_has_dense(entry) for entry in summary)
    if dense:
        notes += ["Models trained with randomized positions (model.random_positions) are tested twice: *as "
                  "trained* (positions sampled as in training) and *dense* (positions 0..T-1, as every other "
                  "model is tested).", ""]
    head = ["task", *axes, *(["positions"] if dense else [])]
    for factor in FACTORS:
        head += [f"{factor:g}× exact", f"{factor:g}× per token"]
    body = []
    for entry in summary:
        for positions, exact, token in POSITIONS if _has_dense(entry) else POSITIONS[:1]:
            line = [labels[entry["base"]], *(_cell(entry["values"][a]) for a in axes)]
            if dense:
                line.append(positions if _has_dense(entry) else "")
            for factor in FACTORS:
                at = entry[f"at_{factor:g}x"]
                if did_not_learn(entry):
                    line += ["did not learn", "—"]
                else:
                    learned = f" ({entry['learned']}/{entry['judged']} learned)" if at[exact] else ""
                    line += [_percent(at[exact], at=True) + learned, _percent(at[token])]
            body.append(line)
    return [*notes, *_table(head, body)]


def _has_dense(entry: dict) -> bool:
    return any(entry[f"at_{factor:g}x"][POSITIONS[1][1]] for factor in FACTORS)


def _table(head: Sequence[str], body: Sequence[Sequence[str]]) -> list[str]:
    return ["| " + " | ".join(head) + " |", "|" + "---|" * len(head), *("| " + " | ".join(r) + " |" for r in body)]


def _percent(value: Optional[dict], at: bool = False) -> str:
    """A spread as "97.1% ± 1.2%" (with "@N", the length it is measured at); "—" for none."""
    if not value:
        return "—"
    return f"{value['mean']:.1%} ± {value['std']:.1%}" + (f" @{value['length']}" if at else "")


def _cell(value) -> str:
    return short(value).replace("|", "\\|")
