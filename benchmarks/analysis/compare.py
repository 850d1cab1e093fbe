"""A fair comparison of optimizers on the runs of one results folder.

Everything here is a plain function on the frame returned by ``benchmarks.store.load_results`` (one row per
run), so it is testable on hand-built frames and usable from a notebook.

Definitions (also printed in the reports):

* **Task group**: runs that differ only in the optimizer and the seed. The key is ``task`` plus every
  ``data.*``, ``model.*`` and ``train.*`` column that varies between runs of that task, except ``train.seed``
  and the keys in :data:`NON_SEMANTIC_TRAIN_KEYS` (device, worker counts, logging and checkpoint cadence),
  which do not change what is computed. ``tags.*`` are labels, never part of the key.
* **Method**: the optimizer name, plus the ``optimizer.*`` hyper-parameters that vary between runs with that
  name inside one task group (``adamp[lr=0.01]``); a name used with one setting per group is just the name,
  so a learning rate tuned per task still compares as one method across tasks.
* **Primary metric** of a task, in this order: ``--metric``; the column ``primary_metric`` that every
  record written since the metric declarations were stored carries; the mapping :data:`PRIMARY_METRICS`
  (older records), which mirrors ``Task.metrics`` of the registered tasks (a test keeps the two in sync) so
  that analysis reads the store only and never imports task code.
* **Direction** ("max" or "min") of a metric: ALWAYS the task's declaration, read from the record's
  ``metric_modes.<name>`` columns or, for older records, from :data:`METRIC_MODES` (``last_<m>`` and
  ``best_<m>`` have the direction of ``<m>``). ``--mode`` is only needed for a metric that its task does
  not declare; a ``--mode`` that contradicts a declaration, or a metric that is in no record, is an error.
  Nothing is guessed from the metric's name.
* **Paired difference**: for each seed that finished (status "done", finite metric) under both the method
  and the baseline in the same task group, ``method - baseline``. Verdicts come from a paired t-test with
  an optional equivalence margin per task and Holm's correction over all cells judged at once; the rules
  and their simulated error rates are in :mod:`benchmarks.analysis.stats` and ``docs/statistics.md``.
  Fewer than ``min_pairs`` matched seeds, or differences without variance, give *inconclusive* with the
  reason (never a win or a loss).
* **Performance profile** (Dolan and More, 2002): for problem p (task group) and method s with mean score
  a_ps over its finished seeds, the ratio is r_ps = a_ps / min_s a_ps for "min" metrics and
  r_ps = max_s a_ps / a_ps for "max" metrics (so 1 is the best method, and larger is worse); a method with
  no finished run on p gets r_ps = inf. rho_s(tau) is the fraction of problems with r_ps <= tau. Problems
  with a score <= 0 (a loss of exactly 0, a negative cosine) have no meaningful ratio and are left out.
* **Cost**: wall time from ``timing.wall_s``; a run is on a GPU when ``env.device`` names CUDA or a GPU;
  GPU-hours = wall_s / 3600 x the number of GPUs (``env.num_gpus``, ``env.world_size`` or
  ``train.world_size`` if present, else 1).

The code lives in :mod:`.labels` (task groups, methods, optimizer spellings, ``--where``),
:mod:`.metric_choice` (primary metric, directions, finished runs), :mod:`.paired` (the paired comparison),
:mod:`.profiles` (performance profiles) and :mod:`.costs`; this module gathers them as one public API (the
notebook and scripts import it).
"""

from __future__ import annotations

from . import stats  # noqa: F401 - part of the public API (compare.stats.MIN_PAIRS)
from .costs import cost_summary, estimate_cost, run_costs
from .labels import (NON_SEMANTIC_TRAIN_KEYS, canonical_optimizer, display_optimizer, filter_where, group_columns,
                     group_labels, hashable, method_labels, optimizer_mask)
from .metric_choice import (DONE, FAILED_STATUSES, LOOP_METRIC_MODES, METRIC_MODES, PRIMARY_METRICS, declared_modes,
                            done_runs, primary_metric)
from .paired import CompareSettings, paired_comparison, win_tie_loss
from .profiles import performance_profile, performance_ratios, score_matrix

__all__ = [
    "CompareSettings",
    "METRIC_MODES",
    "PRIMARY_METRICS",
    "canonical_optimizer",
    "declared_modes",
    "cost_summary",
    "display_optimizer",
    "done_runs",
    "estimate_cost",
    "filter_where",
    "group_labels",
    "method_labels",
    "optimizer_mask",
    "paired_comparison",
    "performance_profile",
    "performance_ratios",
    "primary_metric",
    "run_costs",
    "score_matrix",
    "win_tie_loss",
]
