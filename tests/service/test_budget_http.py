"""The budget endpoints through a real server, on every shared backend."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest

from .test_flows import assert_error, bearer, signed_up

JSON = {"content-type": "application/json"}


def test_charge_replay_mismatch_exceeded(client: httpx.Client, name: str) -> None:
    auth = bearer(signed_up(client, name))
    budget = client.get("/v1/budget", headers=auth).json()
    assert budget == {"limit": 10000, "spent": 0, "remaining": 10000, "currency": "USD"}
    body = {"amount": 2500, "idempotency_key": "order-1", "description": "blood panel"}
    first = client.post("/v1/budget/charges", json=body, headers=auth)
    assert first.status_code == 201
    charged = first.json()
    assert (charged["amount"], charged["spent"], charged["remaining"]) == (2500, 2500, 7500)
    again = client.post("/v1/budget/charges", json=body, headers=auth)
    assert again.status_code == 200 and again.json() == charged
    other = client.post("/v1/budget/charges", json={**body, "amount": 2501}, headers=auth)
    assert_error(other, 422, "idempotency_mismatch")
    over = {"amount": 7501, "idempotency_key": "order-2"}
    too_much = client.post("/v1/budget/charges", json=over, headers=auth)
    error = assert_error(too_much, 402, "budget_exceeded")
    assert error["remaining"] == 7500
    charges = client.get("/v1/budget/charges", headers=auth).json()["charges"]
    assert [(c["charge_id"], c["amount"], c["idempotency_key"]) for c in charges] == [
        (charged["charge_id"], 2500, "order-1")
    ]
    assert charges[0]["description"] == "blood panel" and charges[0]["created_at"].endswith("Z")


def test_budgets_are_per_session(client: httpx.Client, name: str) -> None:
    one = bearer(signed_up(client, name))
    login = client.post(
        "/v1/auth/login", json={"username": name, "password": "correct horse battery"}
    )
    two = bearer(login.json())
    client.post("/v1/budget/charges", json={"amount": 10000, "idempotency_key": "k"}, headers=one)
    assert client.get("/v1/budget", headers=two).json()["remaining"] == 10000
    assert client.get("/v1/budget/charges", headers=two).json() == {"charges": []}


def test_one_key_sent_fifty_times_at_once(client: httpx.Client, name: str) -> None:
    auth = bearer(signed_up(client, name))
    body = {"amount": 75, "idempotency_key": "same"}
    with ThreadPoolExecutor(16) as pool:
        answers = list(pool.map(lambda _: client.post("/v1/budget/charges", json=body,
                                                      headers=auth), range(50)))  # fmt: skip
    assert sorted(a.status_code for a in answers) == [200] * 49 + [201]
    assert len({a.json()["charge_id"] for a in answers}) == 1
    assert client.get("/v1/budget", headers=auth).json()["spent"] == 75


@pytest.mark.parametrize(
    ("body", "field"),
    [
        (b'{"amount": 1.5, "idempotency_key": "k"}', "amount"),
        (b'{"amount": 10.0, "idempotency_key": "k"}', "amount"),
        (b'{"amount": "10", "idempotency_key": "k"}', "amount"),
        (b'{"amount": true, "idempotency_key": "k"}', "amount"),
        (b'{"amount": -5, "idempotency_key": "k"}', "amount"),
        (b'{"amount": 0, "idempotency_key": "k"}', "amount"),
        (b'{"amount": 9007199254740993, "idempotency_key": "k"}', "amount"),
        (b'{"amount": 1e400, "idempotency_key": "k"}', "body"),
        (b'{"amount": NaN, "idempotency_key": "k"}', "body"),
        (b'{"amount": 5}', "idempotency_key"),
        (b'{"amount": 5, "idempotency_key": ""}', "idempotency_key"),
        (b'{"amount": 5, "idempotency_key": "' + b"k" * 256 + b'"}', "idempotency_key"),
        (b'{"amount": 5, "idempotency_key": "k", "description": "' + b"d" * 501 + b'"}',
         "description"),
        (b'{"amount": 5, "idempotency_key": "k", "currency": "EUR"}', "currency"),
    ],
)  # fmt: skip
def test_bad_charges(client: httpx.Client, name: str, body: bytes, field: str) -> None:
    auth = {**bearer(signed_up(client, name)), **JSON}
    error = assert_error(client.post("/v1/budget/charges", content=body, headers=auth), 422,
                         "invalid_request")  # fmt: skip
    assert field in [f["field"] for f in error["fields"]], error
    assert client.get("/v1/budget", headers=auth).json()["spent"] == 0


def test_budget_needs_a_session(client: httpx.Client) -> None:
    assert_error(client.get("/v1/budget"), 401, "unauthorized")
    assert_error(client.post("/v1/budget/charges", json={"amount": 1, "idempotency_key": "k"}),
                 401, "unauthorized")  # fmt: skip
