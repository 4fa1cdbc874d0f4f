"""A trial's progress through its long work (training, sampling): one line at most every
`every_seconds`, e.g.

    ablation_fusion-003  stage2  1200/5000 (24%)  312 img/s  ETA 12m05s

to the trial's log, to its MLflow run (`progress/<stage>/images_per_second` and
`progress/<stage>/eta_seconds`, by step) and to the driver, which prints it (a Ray Tune
intermediate result). A stage's last line says how long it took (the driver and the log
only). `advance` only reads the
clock, so it can be called every step.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field

log = logging.getLogger(__name__)

LogFn = Callable[[dict[str, float], int], None]
LineFn = Callable[[str], None]
EVERY_SECONDS = 30.0


def duration(seconds: float) -> str:
    """12m05s, 1h02m, 42s."""
    seconds = max(0, round(seconds))
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    if hours:
        return f"{hours}h{minutes:02d}m"
    return f"{minutes}m{secs:02d}s" if minutes else f"{secs}s"


@dataclass
class Progress:
    label: str  # the trial's run name
    log_metrics: LogFn | None = None
    report: LineFn | None = None  # to the driver
    every_seconds: float = EVERY_SECONDS
    clock: Callable[[], float] = time.monotonic
    stage: str = field(default="", init=False)
    total: int = field(default=0, init=False)
    images_per_step: int = field(default=1, init=False)
    _first: int = field(default=0, init=False)  # the step this process started from
    _started: float = field(default=0.0, init=False)
    _last: float = field(default=0.0, init=False)

    def start(self, stage: str, total: int, images_per_step: int = 1, done: int = 0) -> None:
        """A stage of `total` steps begins (at step `done` when it resumes)."""
        self.stage, self.total, self.images_per_step = stage, total, images_per_step
        self._first = done
        self._started = self._last = self.clock()

    def advance(self, step: int) -> None:
        """`step` of `total` done; a line when `every_seconds` have passed since the last."""
        now = self.clock()
        if now - self._last >= self.every_seconds and step < self.total:
            self._emit(step, now)

    def finish(self) -> None:
        """The stage's last line: its total steps, images/s and time (not logged to MLflow:
        the stage logs its own images/s and time)."""
        self._emit(self.total, self.clock(), to_run=False)

    def _emit(self, step: int, now: float, to_run: bool = True) -> None:
        self._last = now
        elapsed = max(now - self._started, 1e-9)
        rate = (step - self._first) * self.images_per_step / elapsed
        eta = (self.total - step) * self.images_per_step / rate if rate > 0 else float("inf")
        ending = f"done in {duration(elapsed)}" if step >= self.total else (
            f"ETA {duration(eta)}" if rate > 0 else "ETA unknown")
        line = (f"{self.label}  {self.stage}  {step}/{self.total} "
                f"({100 * step / max(self.total, 1):.0f}%)  {rate:.4g} img/s  {ending}")
        log.info(line)
        if to_run and self.log_metrics is not None:
            metrics = {f"progress/{self.stage}/images_per_second": rate}
            if rate > 0:
                metrics[f"progress/{self.stage}/eta_seconds"] = eta
            self.log_metrics(metrics, step)
        if self.report is not None:
            self.report(line)
