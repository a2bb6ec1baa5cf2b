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

The main names can be imported from ``gptdecoder.lab`` directly.
"""

from gptdecoder.lab.ablation import (
    HeldOut, ablate_heads, ablation_hooks, ablation_rows, encode_examples, exact_match, head_ablation_scores,
    markdown_table, mean_head_outputs, patch_activations,
)
from gptdecoder.lab.capture import (
    as_layer_head_array, capture_attention, example_views, most_varied, patterns_from_cache, stack_patterns,
    token_labels,
)
from gptdecoder.lab.figures import (
    bench_figure, plot_answer_distributions, plot_attention_grid, plot_head_average, plot_head_scores,
    plot_token_attention, save_figure, training_figures,
)
from gptdecoder.lab.masks import (
    Check, MaskReport, check_causality, check_gradient, check_loss_mask, check_patterns, head_steps,
    held_out_examples, mask_report, no_causal_mask_hooks,
)
from gptdecoder.lab.views import (
    attention_viewer_html, bertviz_attention, bertviz_html, write_attention_viewer, write_bertviz_html,
)
