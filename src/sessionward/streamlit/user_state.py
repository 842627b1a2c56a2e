"""Typed per-user documents in the store, with compare-and-set writes from each tab.

A tab reads a document once and keeps that *snapshot* (value and version) in its
``st.session_state``; a write succeeds only over the version the tab last read, so two tabs
(or two users' devices) never silently overwrite each other. A lost write is kept as a
*conflict* that :func:`show_conflict` puts in front of the user: load the other version, or
write this tab's value over it.

    settings = UserState(ward, session, "db_settings", DbSettings)
    current = settings.get() or DbSettings()
    if st.button("Save"):
        settings.set(edited)
    show_conflict(settings)
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Generic, TypeVar

import streamlit as st
from pydantic import TypeAdapter

from ..errors import StateTooLarge, WriteConflict
from ..sessions import Session
from ..stores.records import StateKind
from ..sync import SyncWard
from .login import PREFIX, WIDGET

T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class Conflict:
    """A write that lost: this tab's value, and the version now in the store."""

    mine: Any
    theirs: Any
    version: int  # 0: the document was deleted


class UserState(Generic[T]):
    """The document ``name`` of the session's user (``scope="session"``: of this session
    only), read and written as ``type_`` (a pydantic model or any type pydantic knows)."""

    def __init__(
        self,
        ward: SyncWard,
        session: Session,
        name: str,
        type_: type[T],
        *,
        scope: StateKind = "user",
    ) -> None:
        self.name = name
        self._ward = ward
        self._scope = session.scope(scope)
        self._adapter: TypeAdapter[T] = TypeAdapter(type_)
        owner = session.session_id if scope == "session" else session.user_id
        self._key = f"{PREFIX}state:{scope}:{owner}:{name}"

    def get(self) -> T | None:
        """This tab's snapshot, read from the store on first use (``None``: no document)."""
        snapshot = st.session_state.get(self._key)
        if snapshot is None:
            snapshot = self._load()
        data, _ = snapshot
        return None if data is None else self._adapter.validate_python(data)

    @property
    def version(self) -> int:
        """The version this tab last read or wrote (0: there was no document)."""
        if self._key not in st.session_state:
            self._load()
        return int(st.session_state[self._key][1])

    def set(self, value: T) -> bool:
        """Write ``value`` over the version this tab holds; ``False`` if another tab wrote
        first (a conflict for :func:`show_conflict`) or if it is over ``state_max_bytes``
        (said on the page)."""
        return self._write(self._adapter.dump_python(value, mode="json"), self.version)

    def reload(self) -> T | None:
        """Read the store again, dropping this tab's snapshot and any conflict."""
        st.session_state.pop(self._key + ":conflict", None)
        self._load()
        return self.get()

    @property
    def conflict(self) -> Conflict | None:
        found = st.session_state.get(self._key + ":conflict")
        return found if isinstance(found, Conflict) else None

    def overwrite(self) -> bool:
        """Write the conflicting value of this tab over the version now in the store (still
        compare-and-set: a third writer in between makes a new conflict)."""
        conflict = self.conflict
        if conflict is None:
            return True
        return self._write(conflict.mine, conflict.version)

    def _write(self, data: Any, expected: int) -> bool:
        try:
            version = self._ward.state.put(self._scope, self.name, data, expected_version=expected)
        except WriteConflict:
            theirs, version_now = self._read()  # the tab keeps showing its own snapshot
            st.session_state[self._key + ":conflict"] = Conflict(data, theirs, version_now)
            return False
        except StateTooLarge as exc:
            st.error(f"Not saved: this is {exc.size:,} bytes, and at most {exc.limit:,} fit.")
            return False
        st.session_state[self._key] = (data, version)
        st.session_state.pop(self._key + ":conflict", None)
        return True

    def _read(self) -> tuple[Any, int]:
        doc = self._ward.state.get(self._scope, self.name)
        return (None, 0) if doc is None else (doc.data, doc.version)

    def _load(self) -> tuple[Any, int]:
        snapshot = self._read()
        st.session_state[self._key] = snapshot
        return snapshot


def show_conflict(state: UserState[Any], *, what: str | None = None) -> bool:
    """If ``state``'s last write lost, say so and offer both ways out; ``True`` if shown."""
    conflict = state.conflict
    if conflict is None:
        return False
    label = what or state.name
    st.warning(
        f"{label} was changed in another tab or window after this one loaded it, "
        "so your change was not saved."
    )
    load, keep = st.columns(2)
    if load.button("Load the other version", key=f"{WIDGET}conflict-load-{state.name}"):
        state.reload()
        st.rerun()
    if keep.button("Save mine over it", key=f"{WIDGET}conflict-keep-{state.name}"):
        state.overwrite()
        st.rerun()
    return True
