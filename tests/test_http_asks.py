"""HTTP's in-process asks (``http_asks.LocalAsks``) on their own: a request
goes in through the gateway's decode and admission, its reply comes back by
ticket; the same question in flight is asked once; every ask ends."""

from __future__ import annotations

import asyncio

import pytest

from kryten_likes import wire
from kryten_likes.http_asks import LocalAsks
from kryten_likes.messages import TopAsked


class Bus:
    def __init__(self, room: bool = True) -> None:
        self.room = room

    def admit(self) -> bool:
        return self.room


class Router:
    def __init__(self) -> None:
        self.sent: list = []

    def send(self, message) -> None:
        self.sent.append(message)


class Activation:
    def __init__(self, room: bool = True) -> None:
        self.bus, self.router = Bus(room), Router()
        self.taking_requests = True


@pytest.mark.anyio
async def test_the_same_question_in_flight_is_asked_once_and_each_gets_the_answer():
    a = Activation()
    asks = LocalAsks(lambda: a, "default")
    first = asyncio.ensure_future(asks.ask("top_liked", {"window": "week"}))
    second = asyncio.ensure_future(asks.ask("top_liked", {"window": "week"}))
    other = asyncio.ensure_future(asks.ask("top_liked", {"window": "day"}))
    await asyncio.sleep(0)
    await asyncio.sleep(0)
    assert [type(m) for m in a.router.sent] == [TopAsked, TopAsked]
    for m in a.router.sent:
        asks.heard(wire.ok(m.reply, window=m.window, items=[]))
    assert (await first)["window"] == (await second)["window"] == "week"
    assert (await other)["window"] == "day"
    assert asks._flying == {} and asks._waiting == {}


@pytest.mark.anyio
async def test_one_asker_going_away_does_not_end_the_others_question():
    a = Activation()
    asks = LocalAsks(lambda: a, "default")
    leaving = asyncio.ensure_future(asks.ask("now_playing", {}))
    staying = asyncio.ensure_future(asks.ask("now_playing", {}))
    await asyncio.sleep(0)
    await asyncio.sleep(0)
    leaving.cancel()
    await asyncio.sleep(0)
    (m,) = a.router.sent
    asks.heard(wire.ok(m.reply, video_id="v1", title=None, started_at=None))
    assert (await staying)["video_id"] == "v1"


@pytest.mark.anyio
async def test_refused_at_the_door_standby_or_at_capacity_is_an_answer():
    assert (await LocalAsks(lambda: Activation(), "default").ask("top_liked", {"window": "year"}))["error"] \
        == "invalid_request"
    standby = await LocalAsks(lambda: None, "default").ask("now_playing", {})
    assert standby["error"] == "unavailable" and "standby" in standby["detail"]
    full = await LocalAsks(lambda: Activation(room=False), "default").ask("now_playing", {})
    assert full["error"] == "unavailable" and "capacity" in full["detail"]
    stepping_down = Activation()
    stepping_down.taking_requests = False
    refused = await LocalAsks(lambda: stepping_down, "default").ask("now_playing", {})
    assert refused["error"] == "unavailable" and stepping_down.router.sent == []
