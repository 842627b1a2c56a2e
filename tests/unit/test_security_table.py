"""docs/security.md names a test for every promise: each of those tests must exist."""

from __future__ import annotations

import base64
import importlib
import inspect
import re
from pathlib import Path

from sessionward.tokens import new_token

ROOT = Path(__file__).resolve().parents[2]
SECURITY = ROOT / "docs" / "security.md"
TEST_ID = re.compile(r"`(tests/[\w/]+\.py)((?:::\w+)+)`")


def named_tests() -> list[tuple[str, list[str]]]:
    found = TEST_ID.findall(SECURITY.read_text(encoding="utf-8"))
    return [(path, names.split("::")[1:]) for path, names in found]


def test_every_test_named_in_the_security_table_exists() -> None:
    named = named_tests()
    assert len(named) >= 40  # the table was parsed, not skipped
    missing = []
    for path, names in named:
        module = importlib.import_module(path.removesuffix(".py").replace("/", "."))
        target: object = module
        for name in names:
            target = getattr(target, name, None)
        if not callable(target) or not names[-1].startswith("test_"):
            missing.append(f"{path}::{'::'.join(names)}")
    assert missing == []


def test_every_asvs_row_names_a_test() -> None:
    rows = [line for line in SECURITY.read_text(encoding="utf-8").splitlines()
            if re.match(r"\| \d+\.\d+\.\d+", line)]  # fmt: skip
    assert len(rows) >= 30
    assert [row for row in rows if not TEST_ID.search(row)] == []


def test_reference_tokens_have_256_random_bits() -> None:
    """ASVS 7.2.3: from the OS CSPRNG (``secrets``), 32 bytes, never repeated."""
    tokens = {new_token() for _ in range(10_000)}
    assert len(tokens) == 10_000
    assert {len(base64.urlsafe_b64decode(token + "=")) for token in tokens} == {32}
    assert "secrets.token_urlsafe(32)" in inspect.getsource(new_token)
