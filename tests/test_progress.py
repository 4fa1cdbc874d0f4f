"""Progress lines: at most one per interval, with images/s and an ETA, and a closing line."""

from __future__ import annotations

from harness.progress import Progress, duration


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_lines_come_at_most_once_per_interval_with_rate_and_eta() -> None:
    clock, lines, logged = Clock(), [], []
    progress = Progress("trial-003", lambda metrics, step: logged.append((step, metrics)),
                        lines.append, every_seconds=30, clock=clock)
    progress.start("stage2", total=1000, images_per_step=16)
    for step in range(1, 1001):
        clock.now = step * 0.1  # 160 images/s
        progress.advance(step)
    progress.finish()
    assert len(lines) == 4  # at 30, 60 and 90 s, then the closing line
    assert lines[0] == "trial-003  stage2  300/1000 (30%)  160 img/s  ETA 1m10s"
    assert lines[-1] == "trial-003  stage2  1000/1000 (100%)  160 img/s  done in 1m40s"
    assert len(logged) == 3  # the closing line is not a metric
    step, metrics = logged[0]
    assert step == 300 and metrics == {"progress/stage2/images_per_second": 160.0,
                                       "progress/stage2/eta_seconds": 70.0}


def test_a_resumed_stage_measures_its_rate_from_where_it_started() -> None:
    clock, lines = Clock(), []
    progress = Progress("t", report=lines.append, every_seconds=10, clock=clock)
    progress.start("stage1", total=100, images_per_step=2, done=50)
    clock.now = 10.0
    progress.advance(60)
    assert lines == ["t  stage1  60/100 (60%)  2 img/s  ETA 40s"]


def test_durations_read_like_a_clock() -> None:
    assert [duration(s) for s in (0, 42, 125, 3725)] == ["0s", "42s", "2m05s", "1h02m"]
