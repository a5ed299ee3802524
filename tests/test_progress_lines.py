"""Long phases print a progress line about once a minute when no bar is shown (log files, pipes, show_progress
False): the phase, the counts and an estimate of the time left."""

import logging

from recbole_msl.trainer import progress


class Clock:
    def __init__(self):
        self.now = 0.0

    def __call__(self):
        return self.now


def test_a_line_a_minute_with_counts_and_the_time_left(monkeypatch, caplog):
    clock = Clock()
    monkeypatch.setattr(progress.time, "perf_counter", clock)
    line = progress.ProgressLine(logging.getLogger("test"), "epoch 3", 200, "chunks")
    with caplog.at_level(logging.INFO, logger="test"):
        for _ in range(10):  # 10 chunks every 30 s: a line at 60 s and at 120 s ...
            clock.now += 30
            line.update(10)
        clock.now += 600
        line.update(100)  # the last: the phase's own end line follows, no progress line
    lines = [r.getMessage() for r in caplog.records]
    assert lines[0] == "epoch 3: 20 of 200 chunks in 1 min 00 s, about 9 min 00 s left"
    assert len(lines) == 5 and lines[-1].startswith("epoch 3: 100 of 200 chunks in 5 min 00 s")


def test_show_progress_unset_means_bars_only_on_a_terminal(tiny_llm_dir):
    from recbole_msl.recbole_seam.config import Config

    config = Config(model="LLMMSL", dataset="ml-100k", config_dict={"llm_path": tiny_llm_dir, "show_progress": None})
    assert config["show_progress"] is False  # pytest captures stderr: no terminal
