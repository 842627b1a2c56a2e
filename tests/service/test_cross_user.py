"""One user cannot read, change or cancel another's data by guessing its ids.

Each guess at another user's (or another session's) record gets the very answer a record
that never existed gets: same status, same body, so a guess learns nothing. Runs on SQLite,
Redis and PostgreSQL (the ``client`` fixture).
"""

from __future__ import annotations

from typing import Any

import httpx

from sessionward.tokens import new_public_id

from .test_flows import PASSWORD, bearer, signed_up


def same_as_absent(guess: httpx.Response, absent: httpx.Response, status: int = 404) -> None:
    assert guess.status_code == absent.status_code == status, (guess.text, absent.text)
    assert guess.json() == absent.json()
    assert guess.json()["error"]["code"] in ("not_found", "version_conflict")


def second_session(client: httpx.Client, name: str) -> dict[str, Any]:
    login = client.post("/v1/auth/login", json={"username": name, "password": PASSWORD})
    assert login.status_code == 200, login.text
    return dict(login.json())


def test_another_users_session_cannot_be_revoked(client: httpx.Client, name: str) -> None:
    alice, mallory = bearer(signed_up(client, name + "a")), signed_up(client, name + "m")
    alices_id = client.get("/v1/sessions", headers=alice).json()["sessions"][0]["session_id"]
    guess = client.delete(f"/v1/sessions/{alices_id}", headers=bearer(mallory))
    absent = client.delete(f"/v1/sessions/{new_public_id()}", headers=bearer(mallory))
    same_as_absent(guess, absent)
    assert client.get("/v1/sessions", headers=alice).status_code == 200
    listed = client.get("/v1/sessions", headers=bearer(mallory)).json()["sessions"]
    assert [s["session_id"] for s in listed] == [mallory["session_id"]]


def test_another_users_job_cannot_be_read_cancelled_or_streamed(
    client: httpx.Client, name: str
) -> None:
    alice, mallory = bearer(signed_up(client, name + "a")), bearer(signed_up(client, name + "m"))
    submitted = client.post("/v1/jobs", json={"kind": "sleep", "params": {"seconds": 30}},
                            headers=alice)  # fmt: skip
    assert submitted.status_code == 202, submitted.text
    job_id, nobody = submitted.json()["job_id"], new_public_id()
    for method, path in (("GET", "/v1/jobs/{}"), ("POST", "/v1/jobs/{}/cancel"),
                         ("GET", "/v1/jobs/{}/events")):  # fmt: skip
        guess = client.request(method, path.format(job_id), headers=mallory)
        absent = client.request(method, path.format(nobody), headers=mallory)
        same_as_absent(guess, absent)
    assert client.get("/v1/jobs", headers=mallory).json() == {"jobs": []}
    mine = client.get(f"/v1/jobs/{job_id}", headers=alice).json()
    assert mine["status"] in ("queued", "running")  # mallory's cancel did nothing
    assert client.post(f"/v1/jobs/{job_id}/cancel", headers=alice).status_code == 202


def test_another_users_documents_are_out_of_reach(client: httpx.Client, name: str) -> None:
    alice, mallory = bearer(signed_up(client, name + "a")), bearer(signed_up(client, name + "m"))
    assert client.put("/v1/state/user/notes", json={"data": "alice's"}, headers=alice).is_success
    for method in ("GET", "DELETE"):
        guess = client.request(method, "/v1/state/user/notes", headers=mallory)
        absent = client.request(method, "/v1/state/user/never-written", headers=mallory)
        same_as_absent(guess, absent)
    stale = {**mallory, "If-Match": '"1"'}
    guess = client.put("/v1/state/user/notes", json={"data": "mallory's"}, headers=stale)
    absent = client.put("/v1/state/user/never-written", json={"data": 0}, headers=stale)
    same_as_absent(guess, absent, 412)
    # a write without If-Match makes mallory's own document, version 1: alice's is untouched
    own = client.put("/v1/state/user/notes", json={"data": "mallory's"}, headers=mallory)
    assert own.json() == {"name": "notes", "version": 1}
    kept = client.get("/v1/state/user/notes", headers=alice).json()
    assert (kept["data"], kept["version"]) == ("alice's", 1)


def test_session_documents_belong_to_one_session(client: httpx.Client, name: str) -> None:
    first = bearer(signed_up(client, name))
    second = bearer(second_session(client, name))
    mallory = bearer(signed_up(client, name + "m"))
    assert client.put("/v1/state/session/cart", json={"data": [1]}, headers=first).is_success
    for other in (second, mallory):
        for method in ("GET", "DELETE"):
            guess = client.request(method, "/v1/state/session/cart", headers=other)
            absent = client.request(method, "/v1/state/session/never-written", headers=other)
            same_as_absent(guess, absent)
        assert client.get("/v1/state/session", headers=other).json() == {"names": []}
    assert client.get("/v1/state/session/cart", headers=first).json()["data"] == [1]


def test_charges_and_idempotency_keys_are_the_sessions_own(client: httpx.Client, name: str) -> None:
    alice = bearer(signed_up(client, name + "a"))
    alice_too = bearer(second_session(client, name + "a"))
    mallory = bearer(signed_up(client, name + "m"))
    key = "order-1"
    first = client.post("/v1/budget/charges", json={"amount": 100, "idempotency_key": key},
                        headers=alice)  # fmt: skip
    assert first.status_code == 201, first.text
    for other in (alice_too, mallory):
        # the same key elsewhere is a new charge: neither a replay of alice's nor a mismatch
        theirs = client.post("/v1/budget/charges", json={"amount": 7, "idempotency_key": key},
                             headers=other)  # fmt: skip
        assert theirs.status_code == 201, theirs.text
        assert theirs.json()["charge_id"] != first.json()["charge_id"]
        assert theirs.json()["spent"] == 7
        ledger = client.get("/v1/budget/charges", headers=other).json()["charges"]
        assert [c["charge_id"] for c in ledger] == [theirs.json()["charge_id"]]
    ledger = client.get("/v1/budget/charges", headers=alice).json()["charges"]
    assert [(c["charge_id"], c["amount"]) for c in ledger] == [(first.json()["charge_id"], 100)]
    assert client.get("/v1/budget", headers=alice).json()["spent"] == 100
