"""Log in, stay logged in across reruns and restarts, log out.

The session's token (the refresh token of :meth:`~sessionward.Auth.login`) is kept in the
page's URL query (``?sw=...``), never the password. Every run reads it back and validates
the session in the store, so a restart of the Streamlit server, a reload and a new tab
opened on the same URL stay logged in, and a logout (or a revocation anywhere) ends every
tab at its next run. Why the URL and not a cookie: Streamlit scripts cannot set cookies
(``st.context.cookies`` is read-only); see docs/streamlit.md for the trade-off.
"""

from __future__ import annotations

import math

import streamlit as st

from ..errors import (
    AccountLocked,
    InvalidArgument,
    InvalidCredentials,
    InvalidToken,
    SessionError,
    StorageError,
    UsernameTaken,
)
from ..sessions import Session
from ..sync import SyncWard

PREFIX = "sessionward:"  # the package's data in st.session_state; forget_tab() drops it
WIDGET = "sessionward-"  # the package's widget keys
_NOTICE = PREFIX + "notice"
_USERNAME = PREFIX + "username"
_TOKEN = PREFIX + "token"


def current_session(ward: SyncWard, *, param: str = "sw") -> Session | None:
    """The live session named by the URL's ``param``, or ``None`` (and the stale token is
    removed from the URL, with a notice for :func:`login_form`).

    The tab also remembers the token, and puts it back in the URL if a page switch dropped
    it. A store that cannot be reached is shown as an error and stops the run."""
    token = st.query_params.get(param) or st.session_state.get(_TOKEN)
    if not token:
        return None
    try:
        session = ward.sessions.validate(token)
    except (SessionError, InvalidToken, InvalidArgument):
        st.query_params.pop(param, None)
        forget_tab()
        st.session_state[_NOTICE] = "Your session has ended. Please log in again."
        return None
    except StorageError:
        st.error("The session store cannot be reached just now. Please try again shortly.")
        st.stop()
    if st.query_params.get(param) != token:
        st.query_params[param] = token
    if st.session_state.get(_TOKEN) != token:
        forget_tab()  # another session than the tab had: nothing of the old one stays
        st.session_state[_TOKEN] = token
    return session


def login_form(
    ward: SyncWard, *, param: str = "sw", allow_register: bool = False
) -> Session | None:
    """The logged-in session, or a login form (and ``None``) when there is none.

    session = login_form(ward)
    if session is None:
        st.stop()
    """
    session = current_session(ward, param=param)
    if session is not None:
        return session
    notice = st.session_state.pop(_NOTICE, None)
    if notice:
        st.info(notice)
    with st.form(WIDGET + "login", clear_on_submit=True):
        username = st.text_input("Username", key=WIDGET + "login-username")
        password = st.text_input("Password", type="password", key=WIDGET + "login-password")
        log_in = st.form_submit_button("Log in")
        register = allow_register and st.form_submit_button("Create account")
    if not (log_in or register):
        return None
    if register and not _register(ward, username, password):
        return None
    _log_in(ward, username, password, param)  # reruns the app when it succeeds
    return None


def _register(ward: SyncWard, username: str, password: str) -> bool:
    try:
        ward.auth.register(username, password)
    except UsernameTaken:
        st.error("That username is taken. Choose another one.")
        return False
    except InvalidArgument as exc:
        st.error(f"Cannot create that account: {exc}")
        return False
    return True


def _log_in(ward: SyncWard, username: str, password: str, param: str) -> None:
    try:
        pair = ward.auth.login(username, password, ip=_client_ip(),
                               user_agent=_text(st.context.headers.get("User-Agent")))  # fmt: skip
    except AccountLocked as exc:
        st.error(f"Too many failed logins. Try again in {_wait(exc.retry_after)}.")
        return
    except InvalidCredentials:
        st.error("Wrong username or password.")
        return
    forget_tab()
    st.query_params[param] = st.session_state[_TOKEN] = pair.refresh_token
    # Run again without the form: Streamlit then drops the form's widget values, the
    # password among them, from the tab's session state.
    st.rerun()


def _client_ip() -> str | None:
    # The WebSocket's peer (behind a proxy: the proxy's address); None on localhost.
    return _text(st.context.ip_address)


def _text(value: object) -> str | None:
    return value if isinstance(value, str) and value else None  # AppTest gives mocks


def _wait(seconds: float) -> str:
    if seconds < 90:
        return f"{max(1, math.ceil(seconds))} seconds"
    return f"{math.ceil(seconds / 60)} minutes"


def username(ward: SyncWard, session: Session) -> str:
    """The session's username (read once per tab)."""
    known = st.session_state.get(_USERNAME)
    if isinstance(known, tuple) and known[0] == session.user_id:
        return str(known[1])
    user = ward.users.get(session.user_id)
    name = user.username if user is not None else session.user_id
    st.session_state[_USERNAME] = (session.user_id, name)
    return name


def logout_button(
    ward: SyncWard, session: Session, *, param: str = "sw", label: str = "Log out"
) -> None:
    """A button that revokes this session (every tab using it is logged out) and reruns."""
    if st.button(label, key=WIDGET + "logout"):
        ward.sessions.revoke(session.user_id, session.session_id)
        st.query_params.pop(param, None)
        forget_tab()
        st.session_state[_NOTICE] = "You have logged out."
        st.rerun()


def forget_tab() -> None:
    """Drop everything this package keeps in the tab's ``st.session_state``."""
    for key in [k for k in st.session_state if str(k).startswith(PREFIX)]:
        del st.session_state[key]
