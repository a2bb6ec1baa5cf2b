"""The attention lab: pure functions that look inside a model.

Tensors (or a model, a task, metric records) go in; tensors, strings or matplotlib
Figures come out. Nothing here parses arguments, prints, or reads a run directory:
the commands in ``gptdecoder.commands`` do that and call these.

capture    capture_attention, patterns_from_cache, stack_patterns, example_views
ablation   ablate_heads (zero / mean), patch_activations, head_ablation_scores,
           encode_examples + exact_match, ablation_rows, markdown_table
masks      the mask debugger: checks (causal mask, loss mask, causality, gradient),
           the deliberately broken mask, head_steps, mask_report
figures    every matplotlib figure: attention heatmaps, answer distributions,
           head scores, training_figures, bench_figure, save_figure
views      bertviz adapters and the offline HTML attention viewer

The names below can be imported from ``gptdecoder.lab`` directly. They are loaded on
first use, so ``import gptdecoder.lab.masks`` does not pull in matplotlib (the
command line imports every command module just to build its parser).
"""
from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

_EXPORTS = {
    "capture": ("capture_attention", "patterns_from_cache", "stack_patterns", "as_layer_head_array",
                "token_labels", "example_views", "most_varied"),
    "ablation": ("ablate_heads", "mean_head_outputs", "ablation_hooks", "patch_activations", "HeldOut",
                 "encode_examples", "exact_match", "head_ablation_scores", "ablation_rows", "markdown_table"),
    "masks": ("Check", "no_causal_mask_hooks", "head_steps", "check_patterns", "check_loss_mask",
              "check_causality", "check_gradient", "held_out_examples", "MaskReport", "mask_report"),
    "figures": ("plot_attention_grid", "plot_head_average", "plot_token_attention", "plot_answer_distributions",
                "plot_head_scores", "training_figures", "bench_figure", "save_figure"),
    "views": ("bertviz_attention", "bertviz_html", "attention_viewer_html", "write_attention_viewer",
              "write_bertviz_html"),
}
_MODULE_OF = {name: module for module, names in _EXPORTS.items() for name in names}
__all__ = sorted(_MODULE_OF)


def __getattr__(name: str):
    """Import the submodule that defines ``name`` on first access (PEP 562)."""
    if name not in _MODULE_OF:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f"{__name__}.{_MODULE_OF[name]}"), name)
    globals()[name] = value  # later lookups skip this function
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))


if TYPE_CHECKING:  # for type checkers and editors, which do not run __getattr__
    from gptdecoder.lab.ablation import (  # noqa: F401
        HeldOut, ablate_heads, ablation_hooks, ablation_rows, encode_examples, exact_match,
        head_ablation_scores, markdown_table, mean_head_outputs, patch_activations,
    )
    from gptdecoder.lab.capture import (  # noqa: F401
        as_layer_head_array, capture_attention, example_views, most_varied, patterns_from_cache,
        stack_patterns, token_labels,
    )
    from gptdecoder.lab.figures import (  # noqa: F401
        bench_figure, plot_answer_distributions, plot_attention_grid, plot_head_average,
        plot_head_scores, plot_token_attention, save_figure, training_figures,
    )
    from gptdecoder.lab.masks import (  # noqa: F401
        Check, MaskReport, check_causality, check_gradient, check_loss_mask, check_patterns, head_steps,
        held_out_examples, mask_report, no_causal_mask_hooks,
    )
    from gptdecoder.lab.views import (  # noqa: F401
        attention_viewer_html, bertviz_attention, bertviz_html, write_attention_viewer, write_bertviz_html,
    )
