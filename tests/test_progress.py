"""descbench.progress: a bar on a terminal, a bounded number of log lines anywhere else; the training
loop's progress and validation lines."""

from __future__ import annotations

import io
import logging
import os
import subprocess
import sys
import textwrap

import pytest

from descbench import progress as progress_module
from descbench.fileio import file_digests
from descbench.nets import L2NetFRN
from descbench.progress import progress, stderr_is_terminal
from descbench.train import loop
from training_cases import TWO_STAGES, ubc_like_set


class FakeTerminal(io.StringIO):
    def isatty(self) -> bool:
        return True


class FakeFile(io.StringIO):
    def isatty(self) -> bool:
        return False


class FakeClock:
    """time.monotonic that moves ``tick`` seconds on every call."""

    def __init__(self, tick: float) -> None:
        self.now, self.tick = 1000.0, tick

    def __call__(self) -> float:
        self.now += self.tick
        return self.now


class _Stderr:
    """Points ``sys.stderr`` at ``stream`` (inside the test body: pytest's capture swaps sys.stderr
    back in after the fixtures ran)."""

    def __init__(self, monkeypatch, stream: io.StringIO) -> None:
        self.monkeypatch, self.stream = monkeypatch, stream
        monkeypatch.delenv(progress_module.ENV_VAR, raising=False)

    def __call__(self) -> io.StringIO:
        self.monkeypatch.setattr(sys, "stderr", self.stream)
        return self.stream


@pytest.fixture
def log_file(monkeypatch):
    """Call it to make stderr a file (as under a workflow); DESCBENCH_PROGRESS unset."""
    return _Stderr(monkeypatch, FakeFile())


@pytest.fixture
def terminal(monkeypatch):
    """Call it to make stderr a (fake) terminal; DESCBENCH_PROGRESS unset."""
    return _Stderr(monkeypatch, FakeTerminal())


def _lines(caplog, name="descbench.progress"):
    return [r.getMessage() for r in caplog.records if r.name == name]


def test_a_long_loop_in_a_log_writes_a_bounded_number_of_lines(log_file, caplog, monkeypatch):
    log_file = log_file()
    monkeypatch.setattr(progress_module.time, "monotonic", FakeClock(0.1))  # 1000 steps "take" 100 s
    caplog.set_level(logging.INFO)
    seen = [x for x in progress(range(1000), desc="describe (sift)", unit="patch")]
    assert seen == list(range(1000))
    lines = _lines(caplog)
    assert 5 <= len(lines) <= 25
    assert all("\r" not in line and "\n" not in line for line in lines)
    assert lines[0].startswith("describe (sift): 10% (100/1,000 patch)")
    assert "patch/s" in lines[0] and "ETA" in lines[0]
    assert lines[-1].startswith("describe (sift): done, 1,000 patch in")
    assert log_file.getvalue() == ""  # no bar, no carriage returns in the log


def test_a_quick_loop_in_a_log_writes_one_line(log_file, caplog):
    log_file = log_file()
    caplog.set_level(logging.INFO)
    with progress(total=5000, desc="describe (sift)", unit="patch") as bar:
        for _ in range(50):
            bar.update(100)
    lines = _lines(caplog)
    assert len(lines) == 1 and lines[0].startswith("describe (sift): done, 5,000 patch")
    assert log_file.getvalue() == ""


def test_time_based_lines_without_a_total(log_file, caplog, monkeypatch):
    log_file()
    monkeypatch.setattr(progress_module.time, "monotonic", FakeClock(1.0))
    caplog.set_level(logging.INFO)
    for _ in progress(iter(range(300)), desc="stream", every_seconds=30):
        pass
    lines = _lines(caplog)
    assert 8 <= len(lines) <= 12  # ~300 s / 30 s, plus the closing line
    assert lines[-1].startswith("stream: done, 300 it")


def test_bytes_are_shown_in_binary_units(log_file, caplog, monkeypatch):
    log_file()
    monkeypatch.setattr(progress_module.time, "monotonic", FakeClock(0.5))
    caplog.set_level(logging.INFO)
    with progress(total=8 << 20, desc="x.tar.gz", unit="B", unit_scale=True, unit_divisor=1024) as bar:
        for _ in range(8):
            bar.update(1 << 20)
    lines = _lines(caplog)
    assert any("(2.0 MiB/8.0 MiB), 2.0 MiB/s" in line for line in lines)  # at most one line a second
    assert lines[-1].startswith("x.tar.gz: done, 8.0 MiB in")


def test_a_transient_loop_is_silent_unless_it_takes_long(log_file, caplog, monkeypatch):
    log_file()
    caplog.set_level(logging.INFO)
    with progress(total=1 << 20, desc="verify model.pt", unit="B", leave=False) as bar:
        bar.update(1 << 20)
    assert _lines(caplog) == []
    monkeypatch.setattr(progress_module.time, "monotonic", FakeClock(1.0))
    list(progress(range(100), desc="read descriptors", leave=False))
    lines = _lines(caplog)
    assert lines and lines[-1].startswith("read descriptors: done")
    assert len(lines) <= 12


def test_a_checksum_writes_nothing_to_a_log(log_file, caplog, tmp_path):
    """The stray ``verify model.pt: 0%`` of the annealing logs."""
    log_file = log_file()
    caplog.set_level(logging.DEBUG)
    model = tmp_path / "model.pt"
    model.write_bytes(b"x" * 10_000)
    assert len(file_digests(model, ["sha256"])["sha256"]) == 64
    assert log_file.getvalue() == ""
    assert not [r for r in caplog.records if "verify" in r.getMessage()]


def test_a_stopped_loop_says_where_it_stopped(log_file, caplog):
    log_file()
    caplog.set_level(logging.INFO)
    with pytest.raises(RuntimeError), progress(total=10, desc="download") as bar:
        bar.update(3)
        raise RuntimeError
    assert _lines(caplog)[-1] == "download: stopped at 3/10 it"


def test_a_terminal_gets_a_bar_and_no_log_lines(terminal, caplog):
    terminal = terminal()
    caplog.set_level(logging.INFO)
    assert stderr_is_terminal()
    bar = progress(range(50), desc="matching", unit="seq")
    assert bar.mode == "bar" and not bar.logs
    assert list(bar) == list(range(50))
    assert "\r" in terminal.getvalue() and "matching" in terminal.getvalue()
    assert "50/50" in terminal.getvalue()
    assert _lines(caplog) == []


def test_log_records_do_not_tear_the_bar_and_handlers_come_back(terminal):
    terminal = terminal()
    root = logging.getLogger()
    handler = logging.StreamHandler(sys.stderr)
    root.addHandler(handler)
    try:
        before = list(root.handlers)
        with progress(total=3, desc="train") as bar:
            assert handler not in root.handlers  # routed through tqdm.write meanwhile
            logging.getLogger("descbench.test").warning("a message")
            bar.update(3)
        assert root.handlers == before
        assert "a message" in terminal.getvalue()
    finally:
        root.removeHandler(handler)


def test_bar_false_logs_even_on_a_terminal_and_the_env_var_overrides(terminal, caplog, monkeypatch):
    terminal()
    caplog.set_level(logging.INFO)
    assert progress(range(3), bar=False).logs
    assert progress(range(3), disable=True).mode == "off"
    monkeypatch.setenv(progress_module.ENV_VAR, "log")
    assert progress(range(3)).logs
    monkeypatch.setenv(progress_module.ENV_VAR, "off")
    off = progress(range(3))
    assert list(off) == [0, 1, 2] and off.mode == "off"
    monkeypatch.setattr(sys, "stderr", FakeFile())
    monkeypatch.setenv(progress_module.ENV_VAR, "bar")
    assert progress(range(3)).mode == "bar"
    assert progress(range(3), bar=False).logs


def test_a_stderr_without_isatty_counts_as_a_log(monkeypatch):
    monkeypatch.setattr(sys, "stderr", object())
    assert not stderr_is_terminal()
    monkeypatch.setattr(sys, "stderr", None)
    assert not stderr_is_terminal()


def test_the_cli_logs_progress_lines_to_a_non_terminal_stderr(tmp_path):
    script = textwrap.dedent(f"""
        import functools, sys
        from descbench import cli
        from descbench.data import mini
        mini.make_mini = functools.partial(mini.make_mini, scale=0.05)
        sys.exit(cli.main(["make-mini", "--data", {str(tmp_path / "mini")!r}]))
    """)
    env = {k: v for k, v in os.environ.items() if k != progress_module.ENV_VAR}
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300,
                          env=env, check=False)
    assert done.returncode == 0, done.stderr
    assert "INFO descbench.data.mini: make-mini: done, 11 set in" in done.stderr
    mini_lines = [line for line in done.stderr.splitlines() if "make-mini" in line]
    assert all("\r" not in line for line in mini_lines) and len(mini_lines) <= 12


# --- training ----------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def ubc_like():
    return ubc_like_set()


def _train(ubc_like, out, **kwargs):
    return loop.train(TWO_STAGES, L2NetFRN, *ubc_like, out, seed=5, device="cpu", checkpoint_every=100,
                      **kwargs)


def test_training_logs_step_loss_lr_throughput_eta_and_validation(ubc_like, log_file, caplog,
                                                                   monkeypatch, tmp_path):
    log_file = log_file()
    monkeypatch.setattr(loop, "LOG_EVERY_PERCENT", 34.0)  # steps 3 and 5 of 6, then the closing line
    monkeypatch.setattr(loop, "LOG_EVERY_SECONDS", 1e9)
    caplog.set_level(logging.INFO, logger="descbench.train.loop")
    result = _train(ubc_like, tmp_path, progress=False)
    lines = _lines(caplog, "descbench.train.loop")
    steps = [line for line in lines if line.startswith("train: ") and "step/s" in line]
    assert len(steps) == 3, lines
    assert steps[0].startswith("train: 50% (3/6 step), loss=")
    assert steps[1].startswith("train: 83% (5/6 step), loss=")
    for line in steps[:2]:
        assert "lr=" in line and "stage=" in line and "step/s" in line and "ETA" in line
    assert steps[2].startswith("train: done, 6 step in")
    validation = [line for line in lines if "validation FPR95" in line]
    # before training, then at the end of each of the three epochs (steps 2, 4, 6)
    assert [line.split(":")[1].strip() for line in validation] == ["step 0/6", "step 2/6 (stage a, epoch 1)",
                                                                     "step 4/6 (stage a, epoch 2)",
                                                                     "step 6/6 (stage b, epoch 3)"]  # epochs count as in metrics.csv
    assert f"{result.val_fpr95_after:.4f}" in validation[-1]
    assert all("\r" not in line for line in lines)
    assert log_file.getvalue() == ""


def test_training_shows_a_bar_on_a_terminal_with_the_same_results(ubc_like, terminal, caplog,
                                                                   monkeypatch, tmp_path_factory):
    terminal = terminal()
    monkeypatch.setattr(loop, "LOG_EVERY_SECONDS", 1e9)
    caplog.set_level(logging.INFO, logger="descbench.train.loop")
    with_bar = _train(ubc_like, tmp_path_factory.mktemp("bar"), progress=True)
    text = terminal.getvalue()
    assert "train" in text and "\r" in text and "6/6" in text
    assert not [line for line in _lines(caplog, "descbench.train.loop") if "step/s" in line]
    assert len([line for line in _lines(caplog, "descbench.train.loop") if "validation FPR95" in line]) == 4
    monkeypatch.setattr(sys, "stderr", FakeFile())
    quiet_dir = tmp_path_factory.mktemp("quiet")
    quiet = _train(ubc_like, quiet_dir, progress=False)
    assert with_bar.state_dict.keys() == quiet.state_dict.keys()
    assert all(with_bar.state_dict[k].equal(quiet.state_dict[k]) for k in quiet.state_dict)
    assert with_bar.val_fpr95_after == quiet.val_fpr95_after


def test_a_resumed_run_logs_from_its_step(ubc_like, log_file, caplog, monkeypatch, tmp_path):
    log_file()
    monkeypatch.setattr(loop, "LOG_EVERY_PERCENT", 34.0)
    monkeypatch.setattr(loop, "LOG_EVERY_SECONDS", 1e9)
    with pytest.raises(loop.StopTraining):
        loop.train(TWO_STAGES, L2NetFRN, *ubc_like, tmp_path, seed=5, device="cpu", progress=False,
                   checkpoint_every=2, stop_after=4)
    caplog.clear()
    caplog.set_level(logging.INFO, logger="descbench.train.loop")
    loop.train(TWO_STAGES, L2NetFRN, *ubc_like, tmp_path, seed=5, device="cpu", progress=False,
               checkpoint_every=2, resume=True)
    lines = [line for line in _lines(caplog, "descbench.train.loop") if "step/s" in line]
    assert [line.split(",")[0] for line in lines] == ["train: 83% (5/6 step)", "train: done"]
    assert lines[-1].startswith("train: done, 2 step in")

