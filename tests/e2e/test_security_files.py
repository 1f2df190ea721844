"""Private by default: what another local user can see or break of a running trader's files,
and paths (run_dir, control socket, its lock) that an attacker could have prepared."""
from __future__ import annotations

import os
import secrets
import shutil
import stat
from pathlib import Path

import pytest

from tests.support.local_user import run_as
from tests.support.trader_process import Trader, said, trader, quiet_settings

SHM_LOCK = """
import fcntl, os, sys
try:
    fd = os.open(sys.argv[1] if len(sys.argv) > 1 else {path!r}, os.O_RDONLY)
    fcntl.lockf(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    print("locked")
except OSError as e:
    print(type(e).__name__)
"""


@pytest.fixture
def open_base():
    """A directory other users may traverse (pytest's own tmp dirs are 0700, which would hide
    loose file modes inside)."""
    base = Path("/tmp") / f"wt-sec-{secrets.token_hex(4)}"
    base.mkdir()
    base.chmod(0o755)
    yield base
    shutil.rmtree(base, ignore_errors=True)


def _mode(p: Path) -> int:
    return stat.S_IMODE(os.lstat(p).st_mode)


def test_files_are_private_whatever_the_umask_and_another_user_cannot_lock_the_shm(open_base, other_user):
    run_dir = open_base / "run"
    with Trader(run_dir, umask=0, out_dir=open_base) as t:
        t.wait_ready()
        files = {p.name: _mode(p) for p in run_dir.rglob("*") if not p.is_dir()}
        dirs = {str(p.relative_to(open_base)): _mode(p) for p in [run_dir, *run_dir.rglob("*")] if p.is_dir()}
        for name in ("t.db", "t.db-wal", "t.db-shm", "paper-venue.db", "t.log", "control.sock.lock"):
            assert name in files, files
        assert files == {name: 0o600 for name in files}, files
        assert dirs == {name: 0o700 for name in dirs}, dirs

        # Another user, even one allowed through the directory, can open neither file.
        run_dir.chmod(0o711)
        try:
            got = run_as(other_user, SHM_LOCK.format(path=str(run_dir / "t.db-shm")))
        finally:
            run_dir.chmod(0o700)
        assert got.stdout.strip() == "PermissionError", got
        assert t.ctl("health").returncode == 0  # and the trader kept its database to itself
        assert t.stop() == 130


def test_a_symlinked_run_dir_is_refused(tmp_path):
    target = tmp_path / "real"
    target.mkdir()
    link = tmp_path / "run"
    link.symlink_to(target)
    res = trader("run", *quiet_settings(link))
    assert res.returncode == 4 and "symbolic link" in res.stderr, said(res)
    assert list(target.iterdir()) == []  # nothing was created through the link


def _planted_link(tmp_path, name: str):
    """A run_dir where `name` is a symlink to a precious file; the refused run's result."""
    precious = tmp_path / "precious"
    precious.write_text("root's data\n")
    run_dir = tmp_path / "run"
    run_dir.mkdir(mode=0o700)
    (run_dir / name).symlink_to(precious)
    res = trader("run", *quiet_settings(run_dir), timeout=60)
    assert precious.read_text() == "root's data\n"  # never written through
    assert "Traceback" not in res.stderr and not (run_dir / "t.db").exists(), said(res)
    return res


def test_a_lock_file_planted_as_a_symlink_is_never_written_through(tmp_path):
    res = _planted_link(tmp_path, "control.sock.lock")
    assert res.returncode == 4 and "symbolic link" in res.stderr, said(res)


def test_a_socket_in_a_directory_others_can_write_is_refused(tmp_path, open_base):
    shared = open_base / "shared"
    shared.mkdir()
    shared.chmod(0o1777)  # like /tmp: anyone could plant a socket or a lock there first
    res = trader("run", *quiet_settings(tmp_path / "run", f"control.socket='{shared}/wt.sock'"))
    assert res.returncode == 4 and "writable by other users" in res.stderr, said(res)
    assert list(shared.iterdir()) == []


def test_a_socket_directory_of_another_user_is_refused(tmp_path, open_base, other_user):
    theirs = open_base / "theirs"
    theirs.mkdir(mode=0o755)
    os.chown(theirs, *other_user)
    res = trader("run", *quiet_settings(tmp_path / "run", f"control.socket='{theirs}/wt.sock'"))
    assert res.returncode == 4 and "not to this user" in res.stderr, said(res)


def test_a_symlink_at_the_socket_path_is_refused_before_anything_starts(tmp_path):
    res = _planted_link(tmp_path, "control.sock")
    assert res.returncode == 4 and "not a socket" in res.stderr, said(res)


FORGER = """
import os, socket, sys
path = sys.argv[1]
s = socket.socket(socket.AF_UNIX)
s.bind(path)
os.chmod(path, 0o777)
s.listen()
print("ready", flush=True)
s.settimeout(20)
try:
    c, _ = s.accept()
    c.recv(65536)
    c.sendall(b'{"v": 1, "id": null, "ok": true, "cmd": "close-all", "data": {"message": "close-all: 7 of 7 closed", "targets": []}}\\n')
    c.close()
except OSError:
    pass
"""


def test_the_client_refuses_a_socket_served_by_another_user(open_base, other_user):
    import subprocess

    shared = open_base / "shared"
    shared.mkdir()
    shared.chmod(0o1777)
    path = shared / "control.sock"
    uid, gid = other_user

    def drop():
        os.setgroups([])
        os.setgid(gid)
        os.setuid(uid)
    forger = subprocess.Popen(["/usr/bin/python3", "-c", FORGER, str(path)], stdout=subprocess.PIPE, text=True,
                              preexec_fn=drop, cwd="/")
    try:
        assert forger.stdout.readline().strip() == "ready"
        res = trader("close-all", "--yes", "--socket", str(path))
        assert res.returncode == 3 and "runs as uid" in res.stderr, said(res)
        assert "7 of 7 closed" not in res.stdout
    finally:
        forger.kill()
        forger.wait(10)


def test_private_dir_tightens_our_own_and_never_a_shared_one(tmp_path):
    from core.files import UnsafePath, private_dir

    ours = tmp_path / "var"
    ours.mkdir()
    ours.chmod(0o777)  # left by an older version under umask 000
    assert _mode(private_dir(ours)) == 0o700
    shared = tmp_path / "shared"
    shared.mkdir()
    shared.chmod(0o1777)
    with pytest.raises(UnsafePath, match="shared directory"):
        private_dir(shared)
    assert _mode(shared) == 0o1777
