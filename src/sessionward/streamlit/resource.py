"""One :class:`~sessionward.SyncWard` per Streamlit process, shared by every session.

Streamlit reruns the script on every interaction; the ward is built on the first run
(``st.cache_resource``) and reused by every later run and every browser tab, so no rerun
opens a store or an event loop. It is closed when the cache entry is released
(``st.cache_resource.clear()``) and at interpreter exit (``atexit``), whichever comes first;
closing twice is harmless.
"""

from __future__ import annotations

import atexit
from collections.abc import Sequence

import streamlit as st

from ..config import Settings
from ..jobs import JobKind
from ..sync import SyncWard
from ..urls import StoreURL, parse_store_url


def connect(
    url: str | StoreURL | None = None,
    *,
    settings: Settings | None = None,
    kinds: Sequence[JobKind] = (),
    worker: bool = False,
) -> SyncWard:
    """The process's SyncWard for ``url`` (default: ``settings.store``), opened once.

    ``kinds`` are registered when it opens; ``worker=True`` also runs a job worker on the
    ward's own event loop thread until the ward closes.

        ward = sessionward.streamlit.connect("sqlite:///app.db", kinds=[PII_SCAN], worker=True)
    """
    settings = settings or Settings.defaults()
    target = url if url is not None else settings.store
    key = parse_store_url(target).redacted()  # no password in the cache key
    return _open(key, worker, tuple(kind.name for kind in kinds), target, settings, tuple(kinds))


def _close(ward: SyncWard) -> None:
    atexit.unregister(ward.close)  # released: nothing left to do at exit
    ward.close()


@st.cache_resource(show_spinner=False, on_release=_close)
def _open(
    key: str,
    worker: bool,
    kind_names: tuple[str, ...],
    _url: str | StoreURL,
    _settings: Settings,
    _kinds: tuple[JobKind, ...],
) -> SyncWard:
    # Arguments with a leading underscore are not hashed: the key, the worker flag and
    # the kinds' names pick the cache entry.
    ward = SyncWard(_url, settings=_settings)
    try:
        for kind in _kinds:
            ward.jobs.register(kind)
        if worker:
            ward.start_job_worker()
    except BaseException:
        ward.close()
        raise
    atexit.register(ward.close)
    return ward
