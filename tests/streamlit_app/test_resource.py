"""One SyncWard per process: reruns and tabs share it; releasing the cache closes it."""

from __future__ import annotations

import pytest
from streamlit.testing.v1 import AppTest

from sessionward import SyncWard

from .conftest import TIMEOUT, restart


def ward_app() -> None:
    import streamlit as st

    import sessionward.streamlit as sw
    from sessionward import Settings

    ward = sw.connect(settings=Settings.from_env())
    st.session_state["ward"] = ward  # the test looks at which object the run got


def test_reruns_and_tabs_share_one_ward_and_a_restart_closes_it(ward: SyncWard) -> None:
    one = AppTest.from_function(ward_app, default_timeout=TIMEOUT).run()
    two = AppTest.from_function(ward_app, default_timeout=TIMEOUT).run()
    first = one.session_state["ward"]
    assert one.run().session_state["ward"] is first and two.session_state["ward"] is first
    assert first.ping() >= 0

    restart()
    with pytest.raises(RuntimeError):
        first.ping()  # closed: its event loop thread has stopped
    three = AppTest.from_function(ward_app, default_timeout=TIMEOUT).run()
    fresh = three.session_state["ward"]
    assert fresh is not first and fresh.ping() >= 0
