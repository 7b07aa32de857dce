"""How the CLI reports what goes wrong: OSError as one line with the path and errno, Ctrl-C as exit 130
with what was kept; ``--debug`` shows the traceback instead."""

import errno
import subprocess
import sys
import textwrap

import pytest

from descbench import cli


def _raising(exc):
    def command(args):
        raise exc

    return command


@pytest.mark.parametrize("code, meaning, hint", [
    (errno.EACCES, "Permission denied", "check its permissions"),
    (errno.EROFS, "Read-only file system", "the file system is read-only"),
    (errno.ENOSPC, "No space left on device", "the disk is full"),
    (errno.ENOENT, "No such file or directory", "check the path"),
])
def test_os_error_is_one_line_with_path_and_errno(monkeypatch, capsys, code, meaning, hint):
    monkeypatch.setattr(cli, "_list", _raising(OSError(code, meaning, "/some/where/file.csv")))
    assert cli.main(["list"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "Traceback" not in err
    assert err.startswith(f"descbench list: error: /some/where/file.csv: {meaning} [{errno.errorcode[code]}]; ")
    assert hint in err


def test_os_error_with_two_paths_or_none(monkeypatch, capsys):
    monkeypatch.setattr(cli, "_list", _raising(OSError(errno.EXDEV, "Invalid cross-device link", "/a", None,
                                                       "/b")))
    assert cli.main(["list"]) == 2
    assert "/a -> /b: Invalid cross-device link [EXDEV]" in capsys.readouterr().err
    monkeypatch.setattr(cli, "_list", _raising(ConnectionResetError("peer went away")))
    assert cli.main(["list"]) == 2
    assert "descbench list: error: ConnectionResetError: peer went away" in capsys.readouterr().err


def test_debug_shows_the_traceback(monkeypatch):
    monkeypatch.setattr(cli, "_list", _raising(PermissionError(errno.EACCES, "Permission denied", "/x")))
    with pytest.raises(PermissionError):
        cli.main(["--debug", "list"])
    monkeypatch.setattr(cli, "_list", _raising(KeyboardInterrupt()))
    with pytest.raises(KeyboardInterrupt):
        cli.main(["--debug", "list"])


def test_ctrl_c_during_download_says_what_is_kept(monkeypatch, capsys, tmp_path):
    from descbench.data import commands as data_commands

    monkeypatch.setattr(data_commands, "_download_ubc", _raising(KeyboardInterrupt()))
    assert cli.main(["download", "ubc", "--root", str(tmp_path)]) == 130
    err = capsys.readouterr().err
    assert "descbench download: interrupted (Ctrl-C)" in err and "Traceback" not in err
    assert f"kept in {tmp_path / 'raw' / 'archives'} as hidden .<file>.<id>.part files" in err
    assert "resume when you run the same `descbench download` again" in err


def test_ctrl_c_during_training_names_the_checkpoint(monkeypatch, capsys, tmp_path):
    from descbench.train import commands as train_commands

    monkeypatch.setattr(train_commands, "run", _raising(KeyboardInterrupt()))
    args = ["train", "--method", "hardnet", "--train-set", "x", "--data", "d", "--out", str(tmp_path)]
    assert cli.main(args) == 130
    assert "no checkpoint was written yet" in capsys.readouterr().err
    (tmp_path / "checkpoint.pt").write_bytes(b"")
    assert cli.main(args) == 130
    err = capsys.readouterr().err
    assert f"the last checkpoint {tmp_path / 'checkpoint.pt'} is kept" in err and "--resume" in err


def test_ctrl_c_elsewhere_exits_130(monkeypatch, capsys):
    monkeypatch.setattr(cli, "_list", _raising(KeyboardInterrupt()))
    assert cli.main(["list"]) == 130
    err = capsys.readouterr().err
    assert "descbench list: interrupted (Ctrl-C)" in err and "nothing half-written" in err


def test_sigint_exit_status_of_the_real_process(tmp_path):
    """The installed entry point: Ctrl-C (SIGINT) in a running command exits 130 without a traceback."""
    script = tmp_path / "run.py"
    script.write_text(textwrap.dedent("""
        import signal, sys, time
        from descbench import cli

        # a shell's background job (CI under nohup, `cmd &`) inherits SIGINT ignored; a terminal user does not
        signal.signal(signal.SIGINT, signal.default_int_handler)

        def command(args):
            # what Ctrl-C delivers, to this (the main) thread: os.kill may hand it to one of torch's threads,
            # and a main thread already in signal.pause() would then wait forever
            signal.raise_signal(signal.SIGINT)
            time.sleep(30)  # the handler runs before this returns; if it did not, the exit status says so
            return 0

        cli._list = command
        sys.exit(cli.main(["list"]))
    """))
    result = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=60)
    assert result.returncode == 130
    assert "interrupted (Ctrl-C)" in result.stderr and "Traceback" not in result.stderr
