"""Training the cells: one cell (``run_cell``), the cache of finished cells, and the
executors that run many -- in this process, a local process pool, or Ray.

A cell's outcome is its **record**, ``OUT/cells/<key>/result.json``: key, labels, status
(ok / failed; ``missing`` is never written, it stands for a cell not trained yet), a
one-line error, and the compact results (``summaries.compact_results``). It is written
atomically and last, so a cell either has a whole record or none: a grid killed at any
moment (even by SIGKILL) leaves finished cells finished, and a half-trained cell
directory without a record is cleared and trained again on the next run.

``run_cells`` skips the cells whose record says ``ok``, so re-running a grid trains only
what is missing: cells never started, cells cut off by a kill, and cells that failed
(failures are retried). ``run_cell`` is the worker: a top-level function that spawned
processes and Ray import by name; it never raises for a failing run (an exception, a
UserError, a NaN loss): the failure is its record.
"""
from __future__ import annotations

import json
import math
import multiprocessing
import os
import shutil
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from typing import Callable, Optional, Sequence, Union

import torch

from gptdecoder.bench.cells import Cell
from gptdecoder.bench.summaries import compact_results
from gptdecoder.errors import UserError
from gptdecoder.storage import write_atomic
from gptdecoder.train import train_from_config

RESULT_FILE = "result.json"
EXECUTORS = ("pool", "ray")
ERROR_CHARS = 500  # a record's error is one line of at most this many characters


# -- records ---------------------------------------------------------------------------------------


def cell_record(cell: Cell, status: str, error: str = "", results: Optional[dict] = None) -> dict:
    """A cell's record: what result.json holds and what ``run_cells`` returns."""
    return {"key": cell.key, "base": cell.base, "values": cell.values, "seed": cell.seed, "status": status,
            "error": error, "results": results or {}}


def failed_record(cell: Cell, error: Union[str, BaseException], results: Optional[dict] = None,
                  context: str = "") -> dict:
    """A failed cell's record, its error on one line: a UserError's own message (it is
    written for the user), any other exception's type and message; ``context`` first."""
    if isinstance(error, BaseException):
        message = " ".join(str(error).split())
        error = message if isinstance(error, UserError) else f"{type(error).__name__}: {message}"
    return cell_record(cell, "failed", f"{context}{' '.join(error.split())}"[:ERROR_CHARS], results)


def write_record(cell: Cell, record: dict) -> None:
    """result.json, atomically: a reader (or the next run) sees the whole record or none."""
    write_atomic(cell.dir / RESULT_FILE, json.dumps(record, indent=2, default=str) + "\n")


def read_record(cell: Cell) -> Optional[dict]:
    """The cell's record (ok or failed), or None: no result.json, an unreadable one, another key's."""
    try:
        record = json.loads((cell.dir / RESULT_FILE).read_text())
    except (OSError, ValueError):
        return None
    return record if isinstance(record, dict) and record.get("key") == cell.key else None


def cached_record(cell: Cell) -> Optional[dict]:
    """The finished result of a cell, or None when it must (still, or again) be trained."""
    record = read_record(cell)
    return record if record is not None and record.get("status") == "ok" else None


def recorded(cells: Sequence[Cell]) -> list[dict]:
    """Each cell's record as it stands, training nothing: a cell never trained (or cut off)
    is ``missing``. For re-summarising a grid, e.g. after renaming its labels."""
    return [read_record(cell) or cell_record(cell, "missing", "not trained yet") for cell in cells]


# -- one cell ---------------------------------------------------------------------------------------


def run_cell(cell: Cell) -> dict:
    """Train one cell into a fresh run directory and write its result.json; returns that record.

    Whatever an earlier, interrupted attempt left in the directory (a checkpoint, metrics,
    half-written temporary files) is removed first: a retrained cell is a clean run.
    Importable by name (spawned pool processes, Ray workers). A failing run -- any
    exception, a UserError, a loss that is not finite -- is returned (and written) as a
    failed record; only KeyboardInterrupt and the like propagate.
    """
    shutil.rmtree(cell.dir, ignore_errors=True)
    try:
        results = train_from_config(cell.config, progress=False, verbose=False, task=cell.task)
    except Exception as e:  # noqa: BLE001 -- any failure is this cell's result, and the grid goes on
        record = failed_record(cell, e)
    else:
        loss = results.get("final_loss")
        if loss is None or not math.isfinite(loss):
            record = failed_record(cell, f"loss is {loss} after {results.get('iters')} iters",
                                   compact_results(results))
        else:
            record = cell_record(cell, "ok", results=compact_results(results))
    write_record(cell, record)
    return record


# -- many cells -------------------------------------------------------------------------------------


def run_cells(cells: Sequence[Cell], workers: int = 1, executor: str = "pool",
              on_record: Optional[Callable[[Cell, dict, bool], None]] = None) -> list[dict]:
    """Train the cells that have no finished result; returns one record per cell, in order.

    ``on_record(cell, record, cached)`` is called for each cell as its record is known:
    cached ones first, then the rest as they finish. Cells with the same key (the same
    resolved config under other labels) train once. ``workers == 1`` with the pool
    executor trains in this process, one cell after another; more use a process pool
    (forkserver where the platform has it, else spawn: forking a process that has run
    torch is unsafe). ``executor="ray"`` sends cells to Ray: the cluster at RAY_ADDRESS,
    else a local one with ``workers`` CPUs.
    """
    if executor not in EXECUTORS:
        raise UserError(f"--executor {executor!r}: expected one of {', '.join(EXECUTORS)}")
    if workers < 1:
        raise UserError(f"--workers {workers}: expected a positive number")
    notify = on_record or (lambda cell, record, cached: None)
    records: dict[str, dict] = {}
    todo: dict[str, Cell] = {}
    for cell in cells:
        if cell.key not in records and cell.key not in todo:
            record = cached_record(cell)
            if record is None:
                todo[cell.key] = cell
            else:
                records[cell.key] = record
    for cell in cells:
        if cell.key in records:
            notify(cell, records[cell.key], True)

    def finished(cell: Cell, record: dict) -> None:
        records[cell.key] = record
        for same in cells:
            if same.key == cell.key:
                notify(same, record, False)

    if todo:
        if executor == "ray":
            _run_ray(list(todo.values()), workers, finished)
        elif workers == 1 or len(todo) == 1:
            _run_here(list(todo.values()), finished)
        else:
            _run_pool(list(todo.values()), min(workers, len(todo)), finished)
    return [records[cell.key] for cell in cells]


def _run_here(todo: Sequence[Cell], finished: Callable[[Cell, dict], None]) -> None:
    threads = torch.get_num_threads()
    try:
        for cell in todo:
            finished(cell, run_cell(cell))
    finally:
        torch.set_num_threads(threads)  # each run sets its own (train.num_threads)


def _init_worker() -> None:
    torch.set_num_threads(1)


def pool_context() -> multiprocessing.context.BaseContext:
    """forkserver (its server imports torch once, then forks clean workers), else spawn."""
    if "forkserver" in multiprocessing.get_all_start_methods():
        context = multiprocessing.get_context("forkserver")
        context.set_forkserver_preload([__name__])
        return context
    return multiprocessing.get_context("spawn")


def _run_pool(todo: Sequence[Cell], workers: int, finished: Callable[[Cell, dict], None]) -> None:
    with ProcessPoolExecutor(max_workers=workers, mp_context=pool_context(), initializer=_init_worker) as pool:
        pending = {pool.submit(run_cell, cell): cell for cell in todo}
        try:
            while pending:
                done, _ = wait(pending, return_when=FIRST_COMPLETED)
                for future in done:
                    cell = pending.pop(future)
                    error = future.exception()
                    finished(cell, _outcome(cell, future.result() if error is None else error))
        except BaseException:  # Ctrl-C: stop the running cells now (a pool worker would go on to queued ones)
            _stop_workers(pool)
            raise


def _stop_workers(pool: ProcessPoolExecutor) -> None:
    """Terminate the pool's processes; an unfinished cell leaves no result.json (written atomically, last)."""
    terminate = getattr(pool, "terminate_workers", None)  # Python 3.14+
    if terminate is not None:
        terminate()
        return
    for process in list((getattr(pool, "_processes", None) or {}).values()):  # before shutdown forgets them
        process.terminate()
    pool.shutdown(wait=False, cancel_futures=True)


def _outcome(cell: Cell, outcome: Union[dict, BaseException]) -> dict:
    """A worker's record (written here too: the worker may have run where this directory is
    not), or, when the worker itself died (killed, out of memory), a failed record."""
    record = outcome if isinstance(outcome, dict) else failed_record(cell, outcome, context="worker failed: ")
    write_record(cell, record)
    return record


def _run_ray(todo: Sequence[Cell], workers: int, finished: Callable[[Cell, dict], None]) -> None:
    try:
        import ray
    except ImportError:
        raise UserError("--executor ray needs Ray: pip install -r requirements.txt (or pip install ray)") from None
    started = False
    if not ray.is_initialized():
        if os.environ.get("RAY_ADDRESS"):
            ray.init(log_to_driver=False)  # the cluster at RAY_ADDRESS
        else:
            ray.init(num_cpus=workers, include_dashboard=False, log_to_driver=False)
        started = True
    try:
        remote = ray.remote(num_cpus=1, max_retries=0)(run_cell)
        pending = {remote.remote(cell): cell for cell in todo}
        try:
            while pending:
                done, _ = ray.wait(list(pending), num_returns=1)
                for ref in done:
                    cell = pending.pop(ref)
                    try:
                        outcome: Union[dict, BaseException] = ray.get(ref)
                    except Exception as e:  # noqa: BLE001 -- the worker process died: this cell failed
                        outcome = e
                    finished(cell, _outcome(cell, outcome))
        except BaseException:  # Ctrl-C: a cluster of its own would go on with the cells sent to it
            for ref in pending:
                ray.cancel(ref, force=True)
            raise
    finally:
        if started:
            ray.shutdown()
