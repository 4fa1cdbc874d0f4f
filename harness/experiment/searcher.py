"""The Ray Tune searcher that runs a sweep's two-level DAG (DESIGN section 3) in one Tuner.

Imported only once Ray is initialised (harness.experiment.scheduling): Ray reads its
authentication settings from the environment when it is first imported.
"""

from __future__ import annotations

from collections import deque
from typing import Any

from ray.tune.search import Searcher

from harness.experiment.jobs import TrialSpec
from harness.tracking import STAGE_STAGE1


class Stage1First(Searcher):
    """Ray Tune searcher for the two-level DAG: it suggests every stage-1 job first, then
    the trials of a stage-1 job once that job has FINISHED, so a trial always finds its
    stage-1 model in the cache and one set of reused workers serves both levels. The trials
    of a stage-1 job that failed are never suggested: they stay in `blocked` for the driver
    to record, and stage 1 is not attempted again."""

    def __init__(self, jobs: list[tuple[TrialSpec, list[TrialSpec]]]) -> None:
        """`jobs`: each stage-1 job spec with the specs of the trials that need its model."""
        super().__init__()
        self._ready = deque(job for job, _ in jobs)
        self._waiting = {job.trial_id: trials for job, trials in jobs}
        self._jobs: dict[str, str] = {}  # Tune's trial id -> stage-1 job id, while it runs
        self.blocked: dict[str, list[TrialSpec]] = {}  # failed stage-1 job id -> its trials

    def suggest(self, trial_id: str) -> dict[str, Any] | str | None:
        if self._ready:
            spec = self._ready.popleft()
            if spec.kind == STAGE_STAGE1:
                self._jobs[trial_id] = spec.trial_id
            return {"spec": spec.to_dict()}
        return None if self._waiting else Searcher.FINISHED  # None: ask again later

    def on_trial_complete(self, trial_id: str, result: dict[str, Any] | None = None,
                          error: bool = False) -> None:
        job = self._jobs.pop(trial_id, None)
        if job is None:
            return
        trials = self._waiting.pop(job)
        status = (result or {}).get("harness_status")
        if status == "FINISHED":
            self._ready.extend(trials)
        elif status or error:
            self.blocked[job] = trials
        # else it was stopped before it reported (Ctrl-C): its trials stay unrun.

    def save(self, checkpoint_path: str) -> None:
        """Nothing to save: a sweep resumes through MLflow (`--resume`), not Tune's state."""

    def restore(self, checkpoint_path: str) -> None:
        """See `save`."""
