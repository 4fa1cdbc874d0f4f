"""One trial of a sweep (DESIGN section 3), stage by stage: stage 1 from the cache, stage 2
trained or reused, then samples drawn and decoded (harness.stages.generate) or, with a
`gddcm` section, the eval images tokenized (harness.stages.tokenize); every metric against
the reference images, all logged to the trial's run.

Stage-1 and stage-2 models come from the shared cache, so arms that differ only in how they
sample (DDIM steps, eta) train nothing. The reference set's Inception features (of the split
`eval.reference` names) are cached by (dataset hash, split, N), so every trial of every sweep
on that data reuses them.
"""

from __future__ import annotations

from harness.cache import ArtifactCache
from harness.config import TrialConfig
from harness.data import Dataset
from harness.keys import stage1_key
from harness.metrics.catalog import describe
from harness.progress import Progress
from harness.runtime import Runtime
from harness.stages.generate import periodic_evaluation, sample_and_evaluate
from harness.stages.references import reference_labels, reference_set
from harness.stages.stage1 import load_stage1
from harness.stages.stage2 import TrainLabels, load_stage2
from harness.stages.tokenize import tokenize_and_evaluate
from harness.sweep import check_metric_names
from harness.tracking import TrackedRun


def run_trial(config: TrialConfig, dataset: Dataset, cache: ArtifactCache, run: TrackedRun,
              runtime: Runtime = Runtime(), progress: Progress | None = None
              ) -> dict[str, float]:
    """Stage 1 -> stage 2 -> samples and their set metrics (or, with `gddcm`, tokenized eval
    images and their reconstruction metrics), every stage on the runtime's device; returns
    every metric it logged (the sweep's summary shows them)."""
    check_metric_names(config)
    run.set_tags(runtime.tags())
    stage1, stage1_summary, stage1_built = load_stage1(config.stage1, dataset, cache, run,
                                                       runtime, progress)
    stage1_metrics = {"stage1/cache_hit": float(not stage1_built)} | {
        "stage1/" + key: value for key, value in stage1_summary.items()}
    reference, reference_key = reference_set(config, dataset)
    watch = (periodic_evaluation(config, stage1, reference, reference_key, cache, run, runtime)
             if config.stage2.eval_every else None)
    stage2 = load_stage2(config, stage1,
                         stage1_key(config.stage1, dataset.content_hash, runtime.numerics()),
                         dataset.train, cache, run.log_metrics, watch, runtime, progress,
                         TrainLabels.of(config.stage2, dataset))
    metrics = {"stage2/cache_hit": float(not stage2.built)} | {
        "stage2/" + key: value for key, value in stage2.summary.items()}
    if config.gddcm is not None:  # a tokenizer trial: reconstruct the eval images, no samples
        metrics |= tokenize_and_evaluate(config, stage1, stage2, dataset.train, reference,
                                         reference_key, cache, run, runtime)
    else:
        metrics |= sample_and_evaluate(config, stage1, stage2, reference, reference_key,
                                       cache, run, runtime, progress,
                                       reference_labels(config, dataset))
    metrics = headline_first(metrics | stage1_metrics)
    run.log_metrics(metrics)  # one batch: MLflow's compare view opens on its first metric
    return metrics


def headline_first(metrics: dict[str, float]) -> dict[str, float]:
    """The scored metrics (FID, KID, LPIPS, ...) before timings and counts, in their order."""
    scored = {name: value for name, value in metrics.items() if describe(name) is not None}
    return scored | metrics
