"""The program in docs/migration.md, run as written (SQLite, in a fresh directory)."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

DOC = Path(__file__).parents[2] / "docs" / "migration.md"


def test_the_migration_example_limits_and_locks_out(tmp_path: Path) -> None:
    match = re.search(r"```python\n(.*?)```", DOC.read_text(), re.S)
    assert match is not None
    (tmp_path / "example.py").write_text(match.group(1))
    ran = subprocess.run([sys.executable, "example.py"], cwd=tmp_path, capture_output=True,
                         text=True, timeout=120, check=False)  # fmt: skip
    assert ran.returncode == 0, ran.stderr
    lines = ran.stdout.splitlines()
    assert [line.split(":")[1].split(",")[0].strip() for line in lines[:7]] == [
        "sent", "sent", "sent", "sent", "sent", "refused", "refused",
    ]  # fmt: skip
    assert lines[7:10] == ["wrong username or password"] * 3
    assert lines[10].startswith("locked: try again in")  # the right password, once locked out
    assert len(lines) == 11
