"""The cron, systemd and Docker recipes of docs/scripts.md work as written (issue 17).

The recipes are the files in docs/examples/recipes/, which the page shows word for word
(checked here), and each is run the way its reader runs it, against FakeGmail:

- cron: each command line of the crontab, given to ``/bin/sh -c`` under ``env -i`` with
  only what cron sets (PATH=/usr/bin:/bin, HOME, LOGNAME, SHELL);
- systemd: ``systemd-analyze verify`` on the units (when this machine has it); the env
  file read by the ``EnvironmentFile=`` rules of systemd.exec(5); ``ExecStart=`` run with
  that and the environment systemd gives a system service;
- Docker: the env file read by the documented ``docker run --env-file`` rules (each line
  ``VAR=VAL`` taken literally, ``#`` comment lines, a bare ``VAR`` passed from the host),
  then the container's command run with it (no container runs here).

The readers disagree on quotes, spaces and backslashes; the documented env file uses none,
and a test holds all three to the same values.
"""

from __future__ import annotations

import getpass
import json
import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from postbud import Settings
from postbud.testing import FakeGmail

ROOT = Path(__file__).resolve().parents[2]
PAGE = ROOT / "docs" / "scripts.md"
RECIPES = ROOT / "docs" / "examples" / "recipes"
#: Where the recipes' postbud is: the virtualenv running these tests.
VENV_BIN = Path(sys.executable).parent
#: All that cron gives a job (cronie, Vixie and Debian cron): PATH, HOME, LOGNAME, SHELL.
CRON_PATH = "/usr/bin:/bin"
#: The fixed PATH of systemd's system manager (systemd.exec(5), "Environment Variables").
SYSTEMD_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin"
#: The PATH of the usual base images (debian, ubuntu, python); postbud's bin dir goes first.
IMAGE_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
#: The systemd unit's user and home, replaced by the test's home where the units are run.
UNIT_HOME = "/home/me"
#: A line that sh, systemd and Docker read alike: no quotes, blanks, $, \, `, ~, # or ;.
PORTABLE = re.compile(r"[A-Z_][A-Z0-9_]*=[A-Za-z0-9@+,./:=_-]*")
BLANKS = " \t\r"
FAILING_JOB = """\
#!/bin/sh
echo "dumping db1 to /backup/db1.sql.gz"
echo "pg_dump: error: connection to server on socket failed" >&2
exit 3
"""


# -- the three readers of an env file ----------------------------------------------------


def sh_reads(path: Path) -> tuple[dict[str, str], str]:
    """The POSTBUD_* variables ``set -a; . FILE; set +a`` exports in /bin/sh, and what
    sh said on stderr."""
    script = 'set -a; . "$1"; set +a; exec "$2" -c "$3"'
    dump = "import json, os; print(json.dumps(dict(os.environ)))"
    shell = ["env", "-i", f"PATH={CRON_PATH}", "/bin/sh", "-c", script]
    result = subprocess.run(
        [*shell, "sh", str(path), sys.executable, dump],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    exported: dict[str, str] = json.loads(result.stdout)
    return {k: v for k, v in exported.items() if k.startswith("POSTBUD_")}, result.stderr


def docker_reads(text: str, host: dict[str, str]) -> dict[str, str]:
    """``docker run --env-file`` as documented (docs/reference/commandline/container_run.md
    and pkg/kvfile of docker/cli): leading whitespace is dropped, lines starting with ``#``
    and empty lines are skipped, ``VAR=VAL`` is taken literally (quotes, ``#`` and trailing
    blanks included), a bare ``VAR`` passes the host's value (none: not set)."""
    values: dict[str, str] = {}
    for number, raw in enumerate(text.split("\n")):
        line = raw.removesuffix("\r")  # Go's line scanner drops a CR before the newline
        if number == 0:
            line = line.removeprefix("\ufeff")
        line = line.lstrip()
        if not line or line.startswith("#"):
            continue
        name, equals, value = line.partition("=")
        if not name or any(c in name for c in " \t"):
            raise ValueError(f"docker refuses the env file line {line!r}")
        if equals:
            values[name] = value
        elif name in host:
            values[name] = host[name]
    return values


def systemd_reads(text: str) -> dict[str, str]:
    """``EnvironmentFile=`` as systemd.exec(5) documents it: ``KEY=VALUE`` lines; empty
    lines, lines without ``=`` and lines starting with ``#`` or ``;`` are ignored; an
    unquoted value loses leading and trailing blanks, keeps interior ones and quotes
    after its first character, takes ``\\x`` as ``x`` and continues on the next line after
    a final backslash; a ``'``- or ``"``-quoted value spans lines, ``"`` with the shell's
    double-quote escapes."""
    values: dict[str, str] = {}
    at = 0
    while at < len(text):
        end = _line_end(text, at)
        line = text[at:end].lstrip(BLANKS)
        if not line or line[0] in "#;" or "=" not in line:
            at = end + 1
            continue
        start = end - len(line)
        equals = text.index("=", start)
        value, at = _systemd_value(text, equals + 1)
        values[text[start:equals].strip(BLANKS)] = value
    return values


def _line_end(text: str, at: int) -> int:
    end = text.find("\n", at)
    return len(text) if end < 0 else end


def _systemd_value(text: str, at: int) -> tuple[str, int]:
    """The value that starts at ``text[at]``, and where the next line starts."""
    while at < len(text) and text[at] in BLANKS:
        at += 1
    out: list[str] = []
    if at < len(text) and text[at] in "'\"":
        quote = text[at]
        at += 1
        while at < len(text) and text[at] != quote:
            if quote == '"' and text[at] == "\\" and at + 1 < len(text):
                following = text[at + 1]
                if following != "\n":  # a backslash-newline is a continuation
                    out.append(following if following in '"\\`$' else "\\" + following)
                at += 2
                continue
            out.append(text[at])
            at += 1
        end = _line_end(text, at + 1)
        if text[at + 1 : end].strip(BLANKS):
            raise ValueError(f"text after a quoted value is not documented: {text[at:end]!r}")
        return "".join(out), end + 1
    keep = 0  # the length of out without its trailing blanks
    while at < len(text) and text[at] != "\n":
        if text[at] == "\\":
            if at + 1 < len(text) and text[at + 1] != "\n":
                out.append(text[at + 1])
                keep = len(out)
            at += 2  # a backslash-newline: the value goes on on the next line
            continue
        out.append(text[at])
        if text[at] not in BLANKS:
            keep = len(out)
        at += 1
    return "".join(out[:keep]), at + 1


@pytest.mark.parametrize(
    ("text", "values"),
    [
        ("A=abcd efgh ijkl mnop\n", {"A": "abcd efgh ijkl mnop"}),  # interior blanks kept
        ('A="abcd efgh ijkl mnop"\n', {"A": "abcd efgh ijkl mnop"}),
        ("A='x \\ y'\n", {"A": "x \\ y"}),
        ("A= \t x y \r\n", {"A": "x y"}),
        ('A=x"y"\n', {"A": 'x"y"'}),  # quotes after the first character are kept
        ("A=a\\\n  b\n", {"A": "a  b"}),
        ("A=a\\\\b\\ \n", {"A": "a\\b "}),
        ('A="a\\$b\\n\\\nc"\n', {"A": "a$b\\nc"}),
        ("A='one\ntwo'\nB=2", {"A": "one\ntwo", "B": "2"}),
        ("# A=1\n; B=2\n  C=3\nno assignment\n\nD=", {"C": "3", "D": ""}),
    ],
)
def test_the_systemd_reader_follows_the_documented_rules(text: str, values: dict[str, str]) -> None:
    assert systemd_reads(text) == values


@pytest.mark.parametrize(
    ("text", "values"),
    [
        ('A="abcd efgh ijkl mnop"\n', {"A": '"abcd efgh ijkl mnop"'}),  # no quote processing
        ("A=abcd efgh ijkl mnop\n", {"A": "abcd efgh ijkl mnop"}),
        ("A=x # not a comment \r\n", {"A": "x # not a comment "}),
        ("\ufeff  # a comment\n\nA=a\\b=c", {"A": "a\\b=c"}),
        ("FROM_HOST\nNOT_ON_HOST\n", {"FROM_HOST": "host value"}),
    ],
)
def test_the_docker_reader_follows_the_documented_rules(text: str, values: dict[str, str]) -> None:
    assert docker_reads(text, {"FROM_HOST": "host value"}) == values


# -- the recipe files and the page ----------------------------------------------------------


def shown_files() -> dict[str, str]:
    """The page's blocks marked ``<!-- file: docs/examples/recipes/X -->``: X -> the block."""
    text = PAGE.read_text()
    blocks = re.finditer(
        r"<!-- file: docs/examples/recipes/(?P<name>[^ ]+) -->\n```[\w-]*\n(?P<code>.*?)```",
        text,
        re.S,
    )
    return {m["name"]: m["code"] for m in blocks}


def test_the_page_shows_every_recipe_file_word_for_word() -> None:
    shown = shown_files()
    files = {p.name for p in RECIPES.iterdir()}
    assert set(shown) == files
    assert {"postbud.env", "crontab", "postbud-backup.service", "postbud-backup.timer"} <= files
    for name, code in shown.items():
        assert (RECIPES / name).read_text() == code, f"scripts.md shows another {name}"


def assignments(text: str) -> list[str]:
    return [line for line in text.splitlines() if line.strip() and not line.startswith("#")]


def test_the_documented_env_file_reads_the_same_in_sh_systemd_and_docker() -> None:
    path = RECIPES / "postbud.env"
    text = path.read_text()
    assert "\r" not in text and "\ufeff" not in text and text.endswith("\n")
    for line in assignments(text):
        assert PORTABLE.fullmatch(line), f"postbud.env: {line!r} does not read the same everywhere"
    expected = {"POSTBUD_USERNAME": "me@gmail.com", "POSTBUD_APP_PASSWORD": "abcdefghijklmnop"}
    by_sh, said = sh_reads(path)
    assert (by_sh, said) == (expected, "")
    assert systemd_reads(text) == expected
    assert docker_reads(text, {"POSTBUD_HOST": "from the host"}) == expected
    # What postbud makes of them: the 16 letters, with nothing to strip.
    settings = Settings.from_mapping(expected, prefix="POSTBUD_")
    assert settings.username == "me@gmail.com"
    assert settings.app_password is not None
    assert re.fullmatch(r"[a-z]{16}", settings.app_password.reveal())


def test_the_table_of_what_each_reader_makes_of_a_line_is_right(tmp_path: Path) -> None:
    header = "| line in the file | `/bin/sh` (`. file`) | systemd `EnvironmentFile=` |"
    header += " `docker run --env-file` |\n|---|---|---|---|\n"
    text = PAGE.read_text()
    assert header in text
    rows = re.findall(r"^\|.*\|$", text[text.index(header) + len(header) :].split("\n\n")[0], re.M)
    assert len(rows) >= 3
    for row in rows:
        line, *cells = (cell.strip() for cell in row.strip("|").split(" | "))
        assignment = line.strip("`")
        name = assignment.partition("=")[0]
        path = tmp_path / "one.env"
        path.write_text(assignment + "\n")
        by_sh, said = sh_reads(path)
        readers = [by_sh.get(name), systemd_reads(assignment).get(name)]
        readers.append(docker_reads(assignment, {}).get(name))
        for cell, value in zip(cells, readers, strict=True):
            if cell.startswith("not set"):  # and sh complains about the `command` it ran
                assert value is None, f"{line}: {value!r}, not {cell}"
                assert all(word in said for word in re.findall(r"`([^`]+)`", cell)), said
            else:
                shown = re.match(r"`([^`]*)`", cell)
                assert shown and shown[1] == value, f"{line}: {value!r}, not {cell}"


# -- a home like the recipes' ---------------------------------------------------------------


def env_file_for(fake: FakeGmail) -> str:
    """The documented env file with the fake's account, plus its host, port and CA file,
    in the same format."""
    values = {
        f"POSTBUD_{name.upper()}": str(value) for name, value in fake.settings_values().items()
    }
    values["POSTBUD_APP_PASSWORD"] = "".join(fake.app_password.split())
    lines = []
    for documented in (RECIPES / "postbud.env").read_text().splitlines():
        name, _, value = documented.partition("=")
        # a documented setting gets the fake's value if it has one; comments stay
        lines.append(f"{name}={values.pop(name, value)}" if assignments(documented) else documented)
    assert "POSTBUD_USERNAME" not in values and "POSTBUD_APP_PASSWORD" not in values
    lines += [f"{name}={value}" for name, value in values.items()]
    text = "\n".join(lines) + "\n"
    for line in assignments(text):
        assert PORTABLE.fullmatch(line), line
    return text


@pytest.fixture
def home(tmp_path: Path, fake_gmail: FakeGmail) -> Path:
    """A home with the recipes' files: ~/.config/postbud.env (chmod 600), postbud in
    ~/.venvs/postbud (this virtualenv) and a job, ~/bin/backup.sh, that fails with 3."""
    home = tmp_path / "home"
    (home / ".config").mkdir(parents=True)
    env_file = home / ".config" / "postbud.env"
    env_file.write_text(env_file_for(fake_gmail))
    env_file.chmod(0o600)
    (home / ".venvs" / "postbud").mkdir(parents=True)
    (home / ".venvs" / "postbud" / "bin").symlink_to(VENV_BIN, target_is_directory=True)
    assert (home / ".venvs" / "postbud" / "bin" / "postbud").is_file()
    job = home / "bin" / "backup.sh"
    job.parent.mkdir()
    job.write_text(FAILING_JOB)
    job.chmod(0o755)
    return home


def assert_the_failure_was_mailed(fake: FakeGmail) -> None:
    """The failing job caused one mail, from the env file's account, with its output."""
    [mail] = fake.messages
    assert mail.authenticated_as == fake.username
    assert mail.recipients == ("oncall@example.com",)
    assert (mail["Subject"] or "").startswith("FAILED (exit status 3): ")
    assert "pg_dump: error: connection to server on socket failed" in (mail.text or "")
    assert "dumping db1" in (mail.text or "")


# -- cron ------------------------------------------------------------------------------------


def crontab_jobs() -> list[str]:
    """The commands of the documented crontab, as cron gives them to /bin/sh."""
    commands = []
    for line in (RECIPES / "crontab").read_text().splitlines():
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        fields = line.split(None, 5)
        assert len(fields) == 6, f"crontab: not five time fields and a command: {line!r}"
        assert all(re.fullmatch(r"[0-9*,/-]+", field) for field in fields[:5]), line
        command = fields[5]
        # cron turns a % into a newline and what follows into stdin; \% is a %.
        assert "%" not in command.replace("\\%", ""), f"crontab: a bare % in {command!r}"
        commands.append(command.replace("\\%", "%"))
    return commands


def cron_environment(home: Path) -> list[str]:
    """``env -i`` with what cron sets, and only that."""
    user = getpass.getuser()
    return ["env", "-i", f"PATH={CRON_PATH}", f"HOME={home}", f"LOGNAME={user}", "SHELL=/bin/sh"]


def as_cron(command: str, home: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*cron_environment(home), "/bin/sh", "-c", command],
        cwd=home,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_the_crontab_line_mails_the_failure_and_keeps_the_status(
    home: Path, fake_gmail: FakeGmail
) -> None:
    [command] = [c for c in crontab_jobs() if " run " in c]
    result = as_cron(command, home)
    assert (result.returncode, result.stdout, result.stderr) == (3, "", "")
    assert_the_failure_was_mailed(fake_gmail)
    log = (home / "cron.log").read_text()  # the job's output, passed through
    assert "dumping db1" in log and "pg_dump: error" in log
    assert "".join(fake_gmail.app_password.split()) not in log


def test_the_crontab_report_line_sends_the_disk_report(home: Path, fake_gmail: FakeGmail) -> None:
    [command] = [c for c in crontab_jobs() if " send " in c]
    result = as_cron(command, home)
    assert (result.returncode, result.stdout, result.stderr) == (0, "", "")
    [mail] = fake_gmail.messages
    assert mail["Subject"] == "Disk report" and mail.recipients == ("me@example.com",)
    assert "Filesystem" in (mail.text or "")  # df -h's header, piped into postbud send
    assert (home / "cron.log").read_text().split() == [mail["Message-ID"]]


# -- systemd ---------------------------------------------------------------------------------


def unit(name: str) -> dict[str, dict[str, str]]:
    """A unit file's sections and keys (each key once in these units)."""
    sections: dict[str, dict[str, str]] = {}
    section: dict[str, str] = {}
    for line in (RECIPES / name).read_text().splitlines():
        if not line.strip() or line[0] in "#;":
            continue
        if line.startswith("["):
            section = sections.setdefault(line.strip("[]"), {})
            continue
        key, _, value = line.partition("=")
        assert key.strip() not in section, f"{name}: {key} twice"
        section[key.strip()] = value.strip()
    return sections


def in_home(path: str, home: Path) -> str:
    assert path.startswith(UNIT_HOME + "/"), path
    return str(home) + path[len(UNIT_HOME) :]


def test_the_units_hang_together() -> None:
    service, timer = unit("postbud-backup.service"), unit("postbud-backup.timer")
    assert service["Service"]["Type"] == "oneshot"
    assert f"/home/{service['Service']['User']}" == UNIT_HOME
    assert service["Service"]["EnvironmentFile"] == f"{UNIT_HOME}/.config/postbud.env"
    assert "Unit" not in timer["Timer"]  # it starts the service of its own name
    assert timer["Timer"]["OnCalendar"] and timer["Install"]["WantedBy"] == "timers.target"


@pytest.mark.skipif(
    shutil.which("systemd-analyze") is None, reason="systemd-analyze is not installed here"
)
def test_systemd_analyze_verify_accepts_the_units(home: Path, tmp_path: Path) -> None:
    units = tmp_path / "units"
    units.mkdir()
    names = ("postbud-backup.service", "postbud-backup.timer")
    for name in names:
        # verify checks that ExecStart's program exists: point /home/me at the test's home
        text = (RECIPES / name).read_text().replace(UNIT_HOME + "/", f"{home}/")
        (units / name).write_text(text)
    result = subprocess.run(
        ["systemd-analyze", "verify", *(str(units / name) for name in names)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    said = [line for line in (result.stdout + result.stderr).splitlines() if "postbud" in line]
    assert (result.returncode, said) == (0, [])


def test_the_service_runs_as_systemd_would_run_it(home: Path, fake_gmail: FakeGmail) -> None:
    service = unit("postbud-backup.service")["Service"]
    exec_start = service["ExecStart"]
    # Without quotes, escapes, $, % or a prefix, systemd splits ExecStart= on blanks.
    assert not set(exec_start) & set("\"'\\$%;") and exec_start[0] not in "@-:+!"
    argv = [
        in_home(word, home) if word.startswith("/home/") else word for word in exec_start.split()
    ]
    assert argv[0] == str(home / ".venvs" / "postbud" / "bin" / "postbud")
    user = service["User"]
    environ = {"PATH": SYSTEMD_PATH, "HOME": str(home), "USER": user, "LOGNAME": user}
    environ |= systemd_reads(Path(in_home(service["EnvironmentFile"], home)).read_text())
    result = subprocess.run(
        argv, env=environ, cwd="/", capture_output=True, text=True, timeout=60, check=False
    )
    assert result.returncode == 3  # the unit fails with the job's status
    assert "dumping db1" in result.stdout and "pg_dump: error" in result.stderr  # the journal
    assert_the_failure_was_mailed(fake_gmail)


# -- Docker ----------------------------------------------------------------------------------


def docker_run() -> tuple[dict[str, list[str]], str, list[str]]:
    """docker-run.sh's options, image and command."""
    text = (RECIPES / "docker-run.sh").read_text().replace("\\\n", " ")
    [line] = [line for line in text.splitlines() if line.startswith("exec docker run ")]
    words = shlex.split(line)[3:]
    options: dict[str, list[str]] = {}
    while words[0].startswith("-"):
        option = words.pop(0)
        options.setdefault(option, [])
        if option != "--rm":
            options[option].append(words.pop(0))
    return options, words[0], words[1:]


def test_the_container_gets_the_env_file_and_runs_as_the_units_do(
    home: Path, tmp_path: Path, fake_gmail: FakeGmail
) -> None:
    options, _image, command = docker_run()
    assert options["--env-file"] == ["$HOME/.config/postbud.env"]  # the file cron reads
    # The same postbud run as the service's, with postbud on the image's PATH.
    service_args = unit("postbud-backup.service")["Service"]["ExecStart"].split()[1:-1]
    assert command[0] == "postbud" and command[1:-1] == service_args
    # The spool is on the volume, so a mail kept for later outlives the container.
    [volume] = options["--volume"]
    mount = volume.partition(":")[2]
    given = dict(pair.split("=", 1) for pair in options["--env"])
    assert Path(given["POSTBUD_SPOOL"]).parent == Path(mount)
    given["POSTBUD_SPOOL"] = str(tmp_path / "volume" / Path(given["POSTBUD_SPOOL"]).name)
    (tmp_path / "volume").mkdir()
    # As docker builds the container's environment: the image's, the env file, then --env.
    environ = {"PATH": f"{VENV_BIN}:{IMAGE_PATH}", "HOME": str(home)}
    environ |= docker_reads((home / ".config" / "postbud.env").read_text(), {})
    environ |= given
    argv = [*command[:-1], str(home / "bin" / "backup.sh")]  # the job inside the image
    result = subprocess.run(
        argv, env=environ, cwd="/", capture_output=True, text=True, timeout=60, check=False
    )
    assert result.returncode == 3  # docker run exits with it too
    assert "pg_dump: error" in result.stderr
    assert_the_failure_was_mailed(fake_gmail)
    assert Path(given["POSTBUD_SPOOL"]).exists()
