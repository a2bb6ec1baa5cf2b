"""The attention lab: pure functions that look inside a model.

Tensors (or a model, a task, metric records) go in; tensors, strings or matplotlib
Figures come out. Nothing here parses arguments, prints, or reads a run directory:
the commands in ``gptdecoder.commands`` do that and call these.

capture    capture_attention, patterns_from_cache, stack_patterns, example_views
ablation   ablate_heads (zero / mean), patch_activations, head_ablation_scores,
           encode_examples + exact_match, ablation_rows (the one ranking of heads by
           ablation: ablate's table and explain's), markdown_table
scores     head_scores (TransformerLens's previous-token / duplicate-token / induction
           detectors), repeated_random_tokens, source_positions + source_scores (attention
           on a task's sources), attention_rollout
lens       logit_lens, direct_logit_attribution (per head, MLP, embedding)
masks      the mask debugger: checks (causal mask, loss mask, causality, gradient),
           the deliberately broken mask, head_steps, mask_report
figures    a run's matplotlib figures: attention heatmaps, answer distributions,
           head scores, the explain report's, training_figures
bench_figures  a bench grid's: bench_figure, bench_length_figure
views      bertviz adapters, viewer_data and the offline HTML attention viewer (its HTML, CSS and
           JavaScript are files in static/, inlined into one page)
assets     asset(name): a file of static/ (the front end: viewer.*, attention_views.*,
           report.css) as text, read with importlib.resources
circuit_graph  the computational graph (embeddings, heads' q/k/v inputs, MLPs, logits),
           graph_of, and one pass over it with edges patched (GraphRun, run_graph)
pairs      clean prompts and their corrupted twins (make_pairs), the metric (logit difference, KL)
circuits   edge_scores (EAP, EAP-IG, exact patching), find_circuit (pruned to a share of the
           metric, with faithfulness), exercised_edges, edge_roc_auc against a known circuit
circuit_figures  circuit_figure: the circuit as a layered graph
explain    the explain report's measurements: measure (model -> Findings), draw (its figures)
roles      Findings and what its numbers mean: head_roles, which heads matter, heads_to_show
prose      numbers as text (pct, points, head_list) and the "In plain words" sentences
report     the report's SECTIONS: Findings -> blocks (report_blocks) and report.json (report_dict)
render     blocks -> markdown and one self-contained HTML page (CSS in static/report.css),
           json_ready for strict JSON

Import from the module that holds a name (``from gptdecoder.lab.ablation import
ablate_heads``): importing the lab's masks or ablation does not load matplotlib.
"""
