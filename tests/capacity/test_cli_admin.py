"""`sessionward users admin NAME [--revoke]` grants and takes the admin role."""

from __future__ import annotations

from pathlib import Path

from tests.e2e.test_cli import PASSWORD, sw


def test_grant_and_revoke_admin(tmp_path: Path) -> None:
    store = f"sqlite:///{tmp_path / 'sw.db'}"
    made = sw("users", "create", "dora", "--password-stdin", store=store, cwd=tmp_path,
              stdin=PASSWORD + "\n")  # fmt: skip
    assert made.returncode == 0
    granted = sw("users", "admin", "dora", store=store, cwd=tmp_path)
    assert granted.returncode == 0 and "dora: roles admin" in granted.stdout
    assert "admin" in sw("users", "list", store=store, cwd=tmp_path).stdout
    taken = sw("users", "admin", "dora", "--revoke", store=store, cwd=tmp_path)
    assert taken.returncode == 0 and "dora: roles (none)" in taken.stdout
    missing = sw("users", "admin", "nobody", store=store, cwd=tmp_path)
    assert missing.returncode == 1 and "no user named 'nobody'" in missing.stderr
