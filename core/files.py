"""Private files and directories: 0600 / 0700 whatever the umask, and never through a link.

The database, the paper account, the log and the control socket's lock are the service's
alone: another local user who can read them learns positions and may lock the database's
shared memory (every write stalls); one who can write a directory on the path can swap a
file for a symlink and have us overwrite whatever it points to. So every path here is
opened with O_NOFOLLOW, created owner-only, and an existing one is tightened if it is ours
and refused if it is not.
"""
from __future__ import annotations

import errno
import os
import stat
from pathlib import Path

FILE_MODE = 0o600
DIR_MODE = 0o700


class UnsafePath(ValueError):
    """A path another user could tamper with; the message says what to change."""


def _owner_ok(st: os.stat_result) -> bool:
    return st.st_uid == os.geteuid()


def _mkdirs(path: Path) -> None:
    """Create `path` and any missing parents 0700 (Path.mkdir gives parents the umask's mode)."""
    missing = []
    p = path
    while not os.path.lexists(p):
        missing.append(p)
        if p.parent == p:
            break
        p = p.parent
    for d in reversed(missing):
        try:
            os.mkdir(d, DIR_MODE)
        except FileExistsError:
            pass


def private_dir(path: str | Path) -> Path:
    """A directory of ours, mode 0700: created if missing, tightened if looser. A symlink, a
    directory of another user (its owner could swap what is inside) or a shared one (sticky,
    like /tmp) is refused."""
    p = Path(path).absolute()
    _mkdirs(p)
    st = os.lstat(p)
    if stat.S_ISLNK(st.st_mode):
        raise UnsafePath(f"{p} is a symbolic link (to {os.readlink(p)}); refusing to follow it — "
                         f"set the path to its target explicitly")
    if not stat.S_ISDIR(st.st_mode):
        raise UnsafePath(f"{p} is not a directory")
    if not _owner_ok(st):
        raise UnsafePath(f"{p} belongs to uid {st.st_uid}, not to this user (uid {os.geteuid()})")
    if st.st_mode & stat.S_ISVTX:  # /tmp and the like: shared by design, never ours to tighten
        raise UnsafePath(f"{p} is a shared directory (sticky bit); use a directory of its own")
    if stat.S_IMODE(st.st_mode) & 0o077:
        os.chmod(p, DIR_MODE, follow_symlinks=False)
    return p


def safe_dir(path: str | Path) -> Path:
    """A directory that only we can change (created 0700 if missing): ours, not a symlink,
    writable by nobody else. Refused otherwise — never tightened, it may be shared on purpose."""
    p = Path(path).absolute()
    _mkdirs(p)
    st = os.lstat(p)
    if stat.S_ISLNK(st.st_mode):
        raise UnsafePath(f"{p} is a symbolic link (to {os.readlink(p)}); use its target explicitly")
    if not stat.S_ISDIR(st.st_mode):
        raise UnsafePath(f"{p} is not a directory")
    if not _owner_ok(st):
        raise UnsafePath(f"{p} belongs to uid {st.st_uid}, not to this user: another user could replace "
                         f"what is in it; use a directory of your own (e.g. run_dir)")
    if stat.S_IMODE(st.st_mode) & 0o022:
        raise UnsafePath(f"{p} is writable by other users (mode {stat.S_IMODE(st.st_mode):o}): another "
                         f"user could replace what is in it; use a directory only you can write")
    return p


def open_private(path: str | Path, flags: int = os.O_RDWR | os.O_CREAT) -> int:
    """os.open without following a symlink, created 0600; an existing file of ours is made 0600,
    one of another user refused. Returns the descriptor (close-on-exec)."""
    p = Path(path)
    try:
        fd = os.open(p, flags | os.O_NOFOLLOW | os.O_CLOEXEC, FILE_MODE)
    except OSError as e:
        if e.errno == errno.ELOOP:  # the last component is a symlink
            raise UnsafePath(f"{p} is a symbolic link; refusing to follow it") from None
        raise
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise UnsafePath(f"{p} is not a regular file")
        if not _owner_ok(st):
            raise UnsafePath(f"{p} belongs to uid {st.st_uid}, not to this user")
        if stat.S_IMODE(st.st_mode) & 0o077:
            os.fchmod(fd, FILE_MODE)
    except BaseException:
        os.close(fd)
        raise
    return fd


def private_file(path: str | Path) -> Path:
    """Make sure `path` exists as a private regular file of ours (parents created 0700); SQLite
    gives a database's -wal and -shm the mode of the database file, so they follow."""
    p = Path(path).absolute()
    _mkdirs(p.parent)
    os.close(open_private(p, os.O_RDONLY | os.O_CREAT))
    for extra in ("-wal", "-shm", "-journal"):
        side = p.with_name(p.name + extra)
        if os.path.lexists(side):
            os.close(open_private(side, os.O_RDONLY))
    return p
