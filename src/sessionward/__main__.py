"""``python -m sessionward`` is the ``sessionward`` command."""

from __future__ import annotations

from .cli import main

main()
