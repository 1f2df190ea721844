"""A second local user for tests of what another account on the machine can do."""
from __future__ import annotations

import os
import pwd
import secrets
import subprocess

import pytest


@pytest.fixture
def other_user():
    """(uid, gid) of a throwaway system user, removed afterwards; skipped unless running as root."""
    if os.geteuid() != 0:
        pytest.skip("needs root to create a second local user (useradd)")
    name = f"wtsec{secrets.token_hex(3)}"
    res = subprocess.run(["useradd", "--system", "--no-create-home", "--shell", "/usr/sbin/nologin", name],
                         capture_output=True, text=True, timeout=30)
    if res.returncode != 0:
        pytest.skip(f"useradd failed: {res.stderr.strip()}")
    try:
        pw = pwd.getpwnam(name)
        yield pw.pw_uid, pw.pw_gid
    finally:
        subprocess.run(["userdel", name], capture_output=True, timeout=30)


def run_as(user: tuple[int, int], code: str, timeout: float = 30) -> subprocess.CompletedProcess:
    """Run Python `code` as `user` (uid, gid); its stdout says what it managed."""
    uid, gid = user

    def drop():
        os.setgroups([])
        os.setgid(gid)
        os.setuid(uid)
    return subprocess.run(["/usr/bin/python3", "-c", code], capture_output=True, text=True, timeout=timeout,
                          preexec_fn=drop, cwd="/")
