"""Issue 17: `postbud run` always runs its job, and `alert_on_crash()` never stops a script.

Bad settings (no password, a username that is no address, a bad `--to`) are said on
stderr before the job and again in the summary; the job runs with its output passed
through and its status is postbud's. `alert_on_crash()` with bad settings prints one line
at install and, at a crash, the usual traceback first and then that line again.
"""

from __future__ import annotations

import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from clitools import clean_env, python_file

from postbud.testing import FakeGmail

NO_CREDENTIALS = "postbud: the job runs, but its failure cannot be mailed: No credentials for"


def good_env(fake_gmail: FakeGmail, tmp_path: Path) -> dict[str, str]:
    values = fake_gmail.settings_values(timeout=5, exit_timeout=3)
    return clean_env(tmp_path, **{f"POSTBUD_{k.upper()}": str(v) for k, v in values.items()})


def run(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run(
        [sys.executable, "-m", "postbud", "run", *args],
        stdin=subprocess.DEVNULL,
        capture_output=True,
        env=env,
        timeout=60,
        check=False,
    )


def lines(data: bytes) -> list[str]:
    return data.decode().splitlines()


# -- postbud run ---------------------------------------------------------------------------

JOB = "echo job ran; echo job complains >&2; exit 3"


def test_without_a_password_the_job_runs_and_its_status_comes_back(tmp_path: Path) -> None:
    env = clean_env(tmp_path, POSTBUD_USERNAME="me@gmail.com")
    result = run(env, "--to", "a@example.com", "--", "sh", "-c", JOB)
    assert result.returncode == 3
    assert result.stdout == b"job ran\n"
    err = lines(result.stderr)
    assert len(err) == 3, err
    assert err[0].startswith(NO_CREDENTIALS)  # before the job's own output
    assert err[1] == "job complains"
    assert err[2].startswith(
        "postbud: the job ended with exit status 3; the failure could not be mailed: "
        "No credentials for me@gmail.com: set POSTBUD_APP_PASSWORD"
    )
    assert "Traceback" not in result.stderr.decode()


def test_with_a_bad_username_the_job_runs(tmp_path: Path) -> None:
    env = clean_env(tmp_path, POSTBUD_USERNAME="me", POSTBUD_APP_PASSWORD="abcd efgh ijkl mnop")
    result = run(env, "--", "sh", "-c", JOB)
    assert result.returncode == 3 and result.stdout == b"job ran\n"
    err = lines(result.stderr)
    problem = "POSTBUD_USERNAME 'me' is not an email address"
    assert err[0].startswith(f"postbud: the job runs, but its failure cannot be mailed: {problem}")
    assert err[-1].startswith("postbud: the job ended with exit status 3; the failure could not")
    assert problem in err[-1]
    assert "abcd" not in result.stderr.decode()  # the password is never printed


def test_with_a_bad_to_the_job_runs_and_nothing_is_mailed(
    fake_gmail: FakeGmail, tmp_path: Path
) -> None:
    marker = tmp_path / "ran"
    result = run(
        good_env(fake_gmail, tmp_path),
        "--to",
        "a@example.com;b@x.com",
        "--",
        "sh",
        "-c",
        f"touch {marker}; exit 4",
    )
    assert result.returncode == 4 and marker.exists()
    err = lines(result.stderr)
    assert len(err) == 2, err
    assert err[0].startswith("postbud: the job runs, but its failure cannot be mailed: --to: ")
    assert "a@example.com;b@x.com" in err[0]
    assert err[1].startswith("postbud: the job ended with exit status 4; the failure could not")
    assert "a@example.com;b@x.com" in err[1]
    assert fake_gmail.messages == []


def test_a_job_killed_by_a_signal_gives_128_plus_n(tmp_path: Path) -> None:
    env = clean_env(tmp_path, POSTBUD_USERNAME="me@gmail.com")
    result = run(env, "--", "sh", "-c", "echo before; kill -TERM $$")
    assert result.returncode == 128 + signal.SIGTERM
    assert result.stdout == b"before\n"
    err = lines(result.stderr)
    assert err[0].startswith(NO_CREDENTIALS)
    assert err[-1].startswith(
        "postbud: the job was killed by SIGTERM (15); the failure could not be mailed: "
    )


def test_a_success_with_bad_settings_still_says_a_failure_would_not_be_mailed(
    tmp_path: Path,
) -> None:
    env = clean_env(tmp_path, POSTBUD_USERNAME="me@gmail.com")
    result = run(env, "--", "true")
    assert result.returncode == 0
    assert lines(result.stderr)[-1].startswith(
        "postbud: the job ended with exit status 0; a failure could not have been mailed: "
    )


def test_a_missing_command_with_bad_settings_exits_127(tmp_path: Path) -> None:
    env = clean_env(tmp_path, POSTBUD_USERNAME="me@gmail.com")
    result = run(env, "--", str(tmp_path / "no-such-job.sh"))
    assert result.returncode == 127
    err = lines(result.stderr)
    assert err[0].startswith(NO_CREDENTIALS) and "cannot run" in err[1]
    assert err[-1].startswith("postbud: the job could not be started; the failure could not")


def test_the_output_passes_through_byte_for_byte(tmp_path: Path) -> None:
    env = clean_env(tmp_path, POSTBUD_USERNAME="me@gmail.com")
    payload = "sys.stdout.buffer.write(bytes(range(256)) * 300 + b'no newline at the end')"
    result = run(env, "--", sys.executable, "-c", f"import sys; {payload}; sys.exit(5)")
    assert result.returncode == 5
    assert result.stdout == bytes(range(256)) * 300 + b"no newline at the end"


def test_no_command_after_the_dashes_is_still_a_usage_error(tmp_path: Path) -> None:
    env = clean_env(tmp_path, POSTBUD_USERNAME="me@gmail.com")
    result = run(env, "--")
    assert result.returncode == 2
    [line] = lines(result.stderr)  # the usage mistake only: nothing ran, nothing to report
    assert "needs a command after --" in line


def test_good_settings_still_mail_and_say_the_order_is_best_effort(
    fake_gmail: FakeGmail, tmp_path: Path
) -> None:
    # Writes 200 ms apart keep their order; the mail only promises that much.
    job = "echo one; sleep 0.2; echo two >&2; sleep 0.2; echo three; exit 6"
    result = run(good_env(fake_gmail, tmp_path), "--to", "ops@example.com", "--", "sh", "-c", job)
    assert result.returncode == 6
    assert (result.stdout, result.stderr) == (b"one\nthree\n", b"two\n")  # kept apart
    [received] = fake_gmail.messages
    text = received.text or ""
    assert (
        "Last 3 line(s) of output (stdout and stderr together; lines written close "
        "together may be out of order):\none\ntwo\nthree\n"
    ) in text
    assert "may be out of order" in (received.html or "")


# -- alert_on_crash --------------------------------------------------------------------------


def script(tmp_path: Path, env: dict[str, str], code: str) -> subprocess.CompletedProcess[str]:
    return python_file(env, tmp_path / "nightly.py", textwrap.dedent(code))


CRASH_WITHOUT_PASSWORD = """
import postbud
postbud.alert_on_crash(to="ops@example.com")
print("the script runs")
1 / 0
"""


def test_alert_on_crash_with_bad_settings_prints_the_traceback_first(tmp_path: Path) -> None:
    env = clean_env(tmp_path, POSTBUD_USERNAME="me@gmail.com")
    result = script(tmp_path, env, CRASH_WITHOUT_PASSWORD)
    assert result.returncode == 1  # Python's usual status for an uncaught exception
    assert result.stdout == "the script runs\n"
    err = result.stderr.splitlines()
    assert err[0].startswith("postbud: alerts on crash are off: No credentials for me@gmail.com")
    assert err[1] == "Traceback (most recent call last):"
    assert err[-2] == "ZeroDivisionError: division by zero"
    assert err[-1].startswith("postbud: the crash was not mailed: No credentials for me@gmail.com")


def test_alert_on_crash_install_with_bad_settings_prints_exactly_one_line(
    fake_gmail: FakeGmail, tmp_path: Path
) -> None:
    code = "import postbud\npostbud.alert_on_crash(to='not an address')\nprint('done')\n"
    result = script(tmp_path, good_env(fake_gmail, tmp_path), code)
    assert (result.returncode, result.stdout) == (0, "done\n")
    [line] = result.stderr.splitlines()
    assert line.startswith("postbud: alerts on crash are off: to: ")


def test_alert_on_crash_with_bad_settings_in_a_thread(tmp_path: Path) -> None:
    code = """
    import threading
    import postbud
    postbud.alert_on_crash(subject="{nope}")
    def work():
        raise ValueError("bad row 7")
    t = threading.Thread(target=work)
    t.start(); t.join()
    print("main thread goes on")
    """
    env = clean_env(tmp_path, POSTBUD_USERNAME="me@gmail.com", POSTBUD_APP_PASSWORD="a" * 16)
    result = script(tmp_path, env, code)
    assert (result.returncode, result.stdout) == (0, "main thread goes on\n")
    err = result.stderr.splitlines()
    assert err[0].startswith("postbud: alerts on crash are off: subject: ")
    assert err[1].startswith("Exception in thread")
    assert err[-2] == "ValueError: bad row 7"
    assert err[-1].startswith("postbud: the crash was not mailed: subject: ")


@pytest.mark.parametrize("first", ["to='not an address'", "to='ops@example.com'"])
def test_alert_on_crash_a_later_good_call_wins(
    fake_gmail: FakeGmail, tmp_path: Path, first: str
) -> None:
    code = f"""
    import postbud
    postbud.alert_on_crash({first})
    postbud.alert_on_crash(to="oncall@example.com")
    1 / 0
    """
    result = script(tmp_path, good_env(fake_gmail, tmp_path), code)
    assert result.returncode == 1
    assert "ZeroDivisionError: division by zero" in result.stderr
    assert "not mailed" not in result.stderr
    [received] = fake_gmail.messages
    assert received.recipients == ("oncall@example.com",)


@pytest.mark.parametrize(
    "options",
    [["--security", "tls"], ["--lines", "abc"], ["--app-password", "x"], ["--subject"]],
)
def test_options_argparse_refuses_still_run_the_job(tmp_path: Path, options: list[str]) -> None:
    result = run(clean_env(tmp_path), *options, "--", "sh", "-c", "echo JOBRAN; exit 4")
    assert result.returncode == 4
    assert result.stdout == b"JOBRAN\n"
    assert (
        "postbud: the job runs, but its failure cannot be mailed: the options before -- could "
        "not be read (see the error above)"
    ) in result.stderr.decode()
    assert b"Traceback" not in result.stderr
