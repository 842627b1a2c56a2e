"""Hypothesis settings for the property tests: a modest number of examples by default (the
whole directory runs in well under a minute), full size with SESSIONWARD_PROPERTY=full."""

from __future__ import annotations

import os

from hypothesis import HealthCheck, settings

settings.register_profile(
    "sessionward", max_examples=60, deadline=None, derandomize=True, print_blob=True,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)  # fmt: skip
settings.register_profile(
    "sessionward-full", max_examples=2_000, deadline=None, print_blob=True,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)  # fmt: skip
PROFILE = "sessionward-full" if os.environ.get("SESSIONWARD_PROPERTY") == "full" else "sessionward"
settings.load_profile(PROFILE)
