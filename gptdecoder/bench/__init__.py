"""The benchmark grid: base configs x axes x seeds, each cell an ordinary training run.

cells       the bench file (load_bench) and its cells (expand), each named by cell_key:
            a hash of its resolved config and the training code, never of its labels
executors   run_cell, the cache of finished cells (result.json), run_cells: in this
            process, a local process pool, or Ray
summaries   RESULT_FIELDS (the one list of what a cell keeps), rows, spreads over seeds,
            accuracy at longer lengths, results.json / .csv / .md

``python -m gptdecoder bench`` (gptdecoder/commands/bench.py) prints and draws; this
package does neither. The model and the trainer never import it.
"""
from gptdecoder.bench.cells import Bench, Cell, cell_key, expand, load_bench, set_config_key
from gptdecoder.bench.executors import EXECUTORS, cached_record, read_record, recorded, run_cell, run_cells
from gptdecoder.bench.summaries import (RESULT_FIELDS, base_labels, length_points, row_of, summarise, variant_label,
                                        write_tables)

__all__ = ["Bench", "Cell", "cell_key", "expand", "load_bench", "set_config_key", "EXECUTORS", "cached_record",
           "read_record", "recorded", "run_cell", "run_cells", "RESULT_FIELDS", "base_labels", "length_points",
           "row_of", "summarise", "variant_label", "write_tables"]
