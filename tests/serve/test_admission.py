"""Admission to POST /v1/predict: a request waiting for a slot has not read its body.

Real concurrent requests go through httpx's ASGI transport (which hands the body to the
app only when the app calls ``receive``); a wrapper counts the body bytes the app pulled
for each request, and the predictor is held inside its first prediction by an event.
"""

from __future__ import annotations

import asyncio
import threading

import httpx
import pytest

from osteolens.serve import create_app
from osteolens.serve.admission import Slots


def _counting(app, received: dict[str, int]):
    """The app, counting the body bytes it receives per request (keyed by the X-Test header)."""

    async def wrapped(scope, receive, send):
        if scope["type"] != "http":
            await app(scope, receive, send)
            return
        key = dict(scope["headers"]).get(b"x-test", b"").decode()
        received[key] = 0

        async def counting():
            message = await receive()
            if message["type"] == "http.request":
                received[key] += len(message.get("body", b""))
            return message

        await app(scope, counting, send)

    return wrapped


def _held(predictor):
    """Make the predictor's first prediction wait: returns (entered, gate) events."""
    entered, gate, real = threading.Event(), threading.Event(), predictor.predict

    def predict(*args, **kwargs):
        entered.set()
        assert gate.wait(60), "the test never released the gate"
        return real(*args, **kwargs)

    predictor.predict = predict
    return entered, gate


async def _until(condition, what: str) -> None:
    for _ in range(3000):
        if condition():
            return
        await asyncio.sleep(0.01)
    raise AssertionError(f"never happened: {what}")


def _run(app, scenario):
    received: dict[str, int] = {}

    async def main():
        transport = httpx.ASGITransport(app=_counting(app, received))
        async with httpx.AsyncClient(transport=transport, base_url="http://test", timeout=120) as client:
            return await scenario(client, received)

    return asyncio.run(main()), received


def _post(client, key, data, token=None):
    headers = {"x-test": key} | ({"Authorization": f"Bearer {token}"} if token else {})
    return asyncio.ensure_future(client.post("/v1/predict", files={"file": ("a.png", data, "image/png")},
                                             headers=headers))


def test_a_queued_request_has_not_read_its_body(make_predictor, png_bytes):
    predictor = make_predictor()
    entered, gate = _held(predictor)
    app = create_app(predictor, max_concurrent=1)

    async def scenario(client, received):
        first = _post(client, "first", png_bytes)
        await _until(entered.is_set, "the first prediction started")
        second = _post(client, "second", png_bytes)
        await _until(lambda: app.state.slots.waiting == 1, "the second request queued")
        snapshot = dict(received)
        gate.set()
        return snapshot, await first, await second

    (snapshot, first, second), received = _run(app, scenario)
    assert snapshot["first"] > len(png_bytes)  # the whole multipart body of the running request
    assert snapshot["second"] == 0  # the waiting one: not a byte
    assert first.status_code == second.status_code == 200
    assert received["second"] == received["first"]  # read in full once its turn came
    assert first.json()["probability"] == second.json()["probability"]
    assert app.state.slots.waiting == 0


def test_a_full_queue_answers_503_with_retry_after(make_predictor, png_bytes):
    predictor = make_predictor()
    entered, gate = _held(predictor)
    app = create_app(predictor, max_concurrent=1, max_queue=1)

    async def scenario(client, received):
        first = _post(client, "first", png_bytes)
        await _until(entered.is_set, "the first prediction started")
        second = _post(client, "second", png_bytes)
        await _until(lambda: app.state.slots.waiting == 1, "the second request queued")
        third = await _post(client, "third", png_bytes)
        gate.set()
        return third, await first, await second

    (third, first, second), received = _run(app, scenario)
    assert third.status_code == 503 and third.headers["retry-after"] == "5"
    assert "1 prediction(s) running and 1 waiting" in third.json()["detail"]
    assert received["third"] == 0
    assert first.status_code == second.status_code == 200


def test_a_wrong_token_is_refused_without_queueing_or_reading(make_predictor, png_bytes):
    predictor = make_predictor()
    entered, gate = _held(predictor)
    app = create_app(predictor, token="s3cret", max_concurrent=1)

    async def scenario(client, received):
        first = _post(client, "first", png_bytes, token="s3cret")
        await _until(entered.is_set, "the first prediction started")
        intruder = await _post(client, "intruder", png_bytes, token="wrong")
        gate.set()
        return intruder, await first

    (intruder, first), received = _run(app, scenario)
    assert intruder.status_code == 401 and intruder.headers["www-authenticate"] == "Bearer"
    assert received["intruder"] == 0
    assert first.status_code == 200


def test_slots_hand_over_in_order_and_survive_cancellation():
    async def main():
        slots = Slots(1)
        order: list[str] = []
        assert await slots.acquire()

        async def take(name):
            await slots.acquire()
            order.append(name)

        a, b, c = (asyncio.ensure_future(take(n)) for n in "abc")
        await asyncio.sleep(0)
        assert slots.waiting == 3
        b.cancel()  # a waiter that gives up leaves the line
        await asyncio.sleep(0)
        assert slots.waiting == 2
        slots.release()  # -> a
        await a
        slots.release()  # -> c
        await c
        slots.release()
        assert order == ["a", "c"]
        assert await slots.acquire()  # the slot is free again, not lost

    asyncio.run(main())


def test_slot_limits_are_checked():
    with pytest.raises(ValueError, match="at least 1"):
        Slots(0)
    with pytest.raises(ValueError, match="max_waiting"):
        Slots(1, -1)
