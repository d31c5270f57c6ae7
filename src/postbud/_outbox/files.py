"""Opening the spool file safely: the folders 0700, the file 0600, no links, our own.

The spool holds mail bodies (password-reset links): a link planted at its path would
make postbud write them, and chmod, wherever it points; a file of another user would
be read and written with our rights. So every missing folder is made 0700, the file is
opened without following a link and must be ours, and its ``-wal`` and ``-shm`` files
too. A refusal is an ``OSError`` (``SpoolRefused``): one warning, and memory.
"""

from __future__ import annotations

import os
import stat

__all__ = ["SpoolRefused", "identity", "make_folders", "open_own_file"]


class SpoolRefused(OSError):
    """The spool path is not safe to use: a link, another user's file, a swapped file."""


def identity(st: os.stat_result) -> tuple[int, int]:
    """What tells two files apart: (device, inode)."""
    return st.st_dev, st.st_ino


def make_folders(folder: str) -> None:
    """Create every missing folder of ``folder`` with mode 0700 (not only the last one:
    ``os.makedirs`` gives the others the umask's mode, 0777 under umask 000)."""
    missing: list[str] = []
    current = folder
    while not os.path.isdir(current):
        missing.append(current)
        parent = os.path.dirname(current)
        if parent == current:
            break
        current = parent
    for path in reversed(missing):
        try:
            os.mkdir(path, 0o700)
        except FileExistsError:  # made meanwhile by another process
            continue
        os.chmod(path, 0o700)  # exactly 0700, whatever the umask took away


def open_own_file(path: str) -> int:
    """Open (or create, mode 0600) the spool without following a link; refuse a link and
    a file of another user, and the same for its -wal and -shm files. Returns the fd.

    sqlite3 cannot be told not to follow links, so the file is checked here, and the
    caller compares it with what SQLite opened.
    """
    for sibling in (f"{path}-wal", f"{path}-shm"):
        _check_own(sibling, required=False)
    nofollow = getattr(os, "O_NOFOLLOW", 0)
    try:
        # Created by us, so it is 0600 from the first byte (SQLite gives the -wal and
        # -shm files the database file's mode).
        fd = os.open(path, os.O_RDWR | os.O_CREAT | nofollow, 0o600)
    except OSError as exc:
        if os.path.islink(path):
            raise SpoolRefused(f"{path} is a symbolic link; postbud does not follow it") from exc
        raise
    try:
        st = os.fstat(fd)
        if hasattr(os, "geteuid") and st.st_uid != os.geteuid():
            raise SpoolRefused(
                f"{path} belongs to another user (uid {st.st_uid}); postbud uses only a "
                "spool of its own"
            )
        refuse_foreign(path, fd, st)
        os.fchmod(fd, 0o600)
    except BaseException:
        os.close(fd)
        raise
    return fd


#: The first bytes of every SQLite database file.
SQLITE_HEADER = b"SQLite format 3\x00"


def refuse_foreign(path: str, fd: int, st: os.stat_result) -> None:
    """Raise ``SpoolRefused`` if the file at ``path`` is not a spool postbud may use,
    repair or move aside: a file of something else that the spool setting points at by
    mistake (``/etc/passwd``, a notes file) must be left exactly as it is.

    Ours: empty (new, or truncated), an SQLite file, or a file only its owner can read
    (postbud makes every spool 0600), whose header was damaged.
    """
    if st.st_size == 0 or not stat.S_ISREG(st.st_mode):
        return
    if os.pread(fd, len(SQLITE_HEADER), 0) == SQLITE_HEADER:
        return
    if st.st_mode & 0o077 == 0:
        return  # a damaged spool of ours: salvage moves it aside and saves what it can
    raise SpoolRefused(
        f"{path} is not a postbud spool (not an SQLite file, and readable by others); "
        "postbud leaves it alone: set spool to a path of its own"
    )


def _check_own(path: str, *, required: bool) -> None:
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        if required:
            raise
        return
    if os.path.islink(path):
        raise SpoolRefused(f"{path} is a symbolic link; postbud does not follow it")
    if hasattr(os, "geteuid") and st.st_uid != os.geteuid():
        raise SpoolRefused(f"{path} belongs to another user (uid {st.st_uid})")
