"""Events for other services (docs/contract-social-web.md): every counted
like, unlike and play published once durable on
``{pfx}.likes.events.{ns}.{kind}`` into ``KRYTEN_LIKES_OUT_{ns}``, with
``Nats-Msg-Id`` = ``event_id`` (the id stored with the change), and
published again at start when the mark says a crash may have left it
unpublished. Against a real nats-server."""

from __future__ import annotations

import itertools
import json

from conftest import playing, plays_of, unique_config, wait_until
from support.events import queue_item

from kryten_likes.event_out import out_stream_name, out_subject
from kryten_likes.store import LIKES_BUCKET
from kryten_likes.store.keys import events_mark_key, record_key

_tags = itertools.count()


def _events(h) -> list[tuple[dict, str]]:
    """Every message of the namespace's event stream: (body, Nats-Msg-Id)."""
    ns = h.config.analytics.namespace

    async def read():
        js = h.nc.jetstream()
        try:
            info = await js.stream_info(out_stream_name(ns))
        except Exception:
            return []
        out = []
        if not info.state.messages:
            return out
        for seq in range(info.state.first_seq, info.state.last_seq + 1):
            m = await js.get_msg(out_stream_name(ns), seq)
            out.append((json.loads(m.data), (m.headers or {}).get("Nats-Msg-Id")))
        return out

    return h.portal.call(read)


def test_likes_unlikes_and_plays_are_published_with_their_stored_ids(harness):
    h = harness()
    ns, prefix = h.config.analytics.namespace, h.config.nats.subject_prefix
    h.publish_event("queue", queue_item("yt", "v1", by="Bob", uid=1))
    h.change_media("v1", title="Song")
    playing(h, "v1")
    wait_until(lambda: plays_of(h, "v1") == 1)
    assert h.request("like", {"username": "Alice"})["like_count"] == 1
    assert h.request("like", {"username": "carl"})["like_count"] == 2
    assert h.request("unlike", {"username": "carl"})["like_count"] == 1
    got = wait_until(lambda: (lambda e: e if len(e) == 4 else None)(_events(h)))
    bodies = [b for b, _ in got]
    assert all(b["event_id"] == msg_id for b, msg_id in got)
    assert len({b["event_id"] for b in bodies}) == 4
    assert [b["kind"] for b in bodies] == ["play", "like", "like", "unlike"]
    play, like, _, unlike = bodies
    assert (play["video_id"], play["curator"], play["play_count"], play["user"]) == ("v1", "Bob", 1, None)
    assert (like["username"], like["user"], like["like_count"], like["curator"]) == ("Alice", "alice", 1, "Bob")
    assert (like["namespace"], like["channel"], like["type"], like["title"]) == (
        ns, h.config.cytube.channel, "yt", "Song")
    assert (unlike["user"], unlike["like_count"]) == ("carl", 1)
    assert like["event_id"] == h.kv(LIKES_BUCKET, record_key(ns, "v1", "alice"))["event_id"]
    assert set(bodies[0]) == {"event_id", "kind", "namespace", "channel", "username", "user", "video_id", "type",
                              "title", "curator", "like_count", "play_count", "at"}
    del prefix


def test_what_a_crash_left_unpublished_is_published_again_with_the_same_id(harness):
    h = harness(unique_config(dedupe_enabled=False))
    ns = h.config.analytics.namespace
    h.change_media("v1")
    playing(h, "v1")
    for name in ("a", "b", "c"):
        assert h.request("like", {"username": name})["status"] == "ok"
    first = wait_until(lambda: (lambda e: e if len(e) == 4 else None)(_events(h)))
    wait_until(lambda: (h.kv(LIKES_BUCKET, events_mark_key(ns)) or {}).get("likes", 0) > 0)
    h.stop()

    async def lose_them():  # as if the daemon died before publishing: no stream, no mark
        js = h.nc.jetstream()
        await js.delete_stream(out_stream_name(ns))
        kv = await js.key_value(LIKES_BUCKET)
        await kv.delete(events_mark_key(ns))

    h.portal.call(lose_them)
    h.start()
    again = wait_until(lambda: (lambda e: e if len(e) == 4 else None)(_events(h)))
    assert sorted(b["event_id"] for b, _ in again) == sorted(b["event_id"] for b, _ in first)
    assert sorted(b["kind"] for b, _ in again) == ["like", "like", "like", "play"]
    # Published, they are not published again at the next start.
    wait_until(lambda: (h.kv(LIKES_BUCKET, events_mark_key(ns)) or {}).get("likes", 0) > 0)
    h.stop()
    h.start()
    assert h.request("like", {"username": "d"})["status"] == "ok"
    final = wait_until(lambda: (lambda e: e if len(e) >= 5 else None)(_events(h)))
    assert [b["kind"] for b, _ in final[4:]] == ["like"], final


def test_namespaces_beyond_the_cap_get_no_stream_of_their_own(harness, monkeypatch):
    """A client naming many namespaces must not make the daemon declare a
    stream for each: past MAX_STREAMS the events go out without a stream."""
    from kryten_likes import event_out

    monkeypatch.setattr(event_out, "MAX_STREAMS", 1)
    h = harness()
    ns = h.config.analytics.namespace
    h.change_media("v1")
    playing(h, "v1")
    heard: list[str] = []

    async def listen():
        async def got(m):
            heard.append(json.loads(m.data)["namespace"])
        return await h.nc.subscribe(f"{h.config.nats.subject_prefix}.likes.events.*.like", cb=got)

    sub = h.portal.call(listen)
    others = [f"{ns}x{i}" for i in range(3)]
    for other in others:
        assert h.request("like", {"username": "u", "namespace": other})["status"] == "ok"
    assert h.request("like", {"username": "u"})["status"] == "ok"
    wait_until(lambda: len(heard) == 4)

    async def streams():
        js = h.nc.jetstream()
        found = []
        for name in [ns, *others]:
            try:
                await js.stream_info(out_stream_name(name))
                found.append(name)
            except Exception:
                pass
        await sub.unsubscribe()
        return found

    assert h.portal.call(streams) == [ns, others[0]]
    assert sorted(heard) == sorted([ns, *others])


def test_stream_acks_say_stored_refused_and_gone_apart(portal, nats_server):
    """Events are acked through one inbox of ours (store/acks.py StreamAcks): a
    stored event and a duplicate pass, a refusal and a stream that is gone
    raise, and nothing is left waiting either way."""
    import nats
    import pytest
    from nats.js import api

    from kryten_likes.store.acks import StreamAcks, StreamRefused

    async def run():
        nc = await nats.connect(nats_server.url)
        js = nc.jetstream()
        name = f"ACKS_{id(nc)}"
        subject = f"acks{id(nc)}.like"
        await js.add_stream(api.StreamConfig(name=name, subjects=[subject], duplicate_window=600))
        acks = StreamAcks(nc)
        try:
            await acks.wait(await acks.publish([(subject, b"{}", {"Nats-Msg-Id": f"e{i}"}) for i in range(300)]))
            await acks.wait(await acks.publish([(subject, b"{}", {"Nats-Msg-Id": "e7"})]))  # a duplicate: acked
            assert (await js.stream_info(name)).state.messages == 300
            with pytest.raises(StreamRefused):  # an expectation the stream refuses
                await acks.wait(await acks.publish([(subject, b"{}", {"Nats-Expected-Last-Sequence": "1"})]))
            await js.delete_stream(name)
            with pytest.raises(StreamRefused):  # nothing stores the subject any more
                await acks.wait(await acks.publish([(subject, b"{}", {"Nats-Msg-Id": "late"})]))
            assert acks._pending == {}
        finally:
            await nc.close()

    portal.call(run)


def test_new_events_go_as_one_chain_and_one_ack_per_stream_and_a_broken_chain_goes_again(portal, nats_server):
    """Events never sent before go as one chain per stream (each expects the
    one before it as the stream's last message) with one ack at its end. A
    chain broken by a refusal is published again event by event; a
    republish is acked event by event from the start. Every event is stored
    once, each stream's in chunk order."""
    import nats
    import pytest
    from nats.js import api

    from kryten_likes.event_out import OutStream
    from kryten_likes.store.acks import StreamRefused

    tag = next(_tags)

    async def run():
        nc = await nats.connect(nats_server.url)
        js = nc.jetstream()
        prefix, a, b = f"chain{tag}", f"cha{tag}", f"chb{tag}"
        # (made here, so that a message over 400 bytes is refused: OutStream takes a stream it finds)
        await js.add_stream(api.StreamConfig(name=out_stream_name(a), subjects=[out_subject(prefix, a, "*")],
                                             duplicate_window=600, max_msg_size=400))
        out = OutStream(js, prefix, "chan", 1, a, nc)
        ids = itertools.count()

        def events(ns, n):
            return [{"event_id": f"{ns}-{next(ids)}", "kind": "like", "namespace": ns} for _ in range(n)]

        async def stored(ns):
            info = await js.stream_info(out_stream_name(ns))
            return [json.loads((await js.get_msg(out_stream_name(ns), seq)).data).get("event_id")
                    for seq in range(info.state.first_seq, info.state.last_seq + 1)] if info.state.messages else []

        def acks_asked():
            return out._acks._next

        try:
            first = events(a, 5) + events(b, 3)
            mixed = [first[0], first[5], first[1], first[6], first[2], first[3], first[7], first[4]]
            before = acks_asked()
            await out.publish(tuple(mixed), chained=True)
            assert acks_asked() - before == 2  # one per stream
            assert out.chains_broken == 0
            assert await stored(a) == [e["event_id"] for e in first[:5]]
            assert await stored(b) == [e["event_id"] for e in first[5:]]

            # A republish (a start after a crash) with new events behind it: an ack each, none stored twice.
            again = first[3:5] + events(a, 3)
            before = acks_asked()
            await out.publish(tuple(again))
            assert acks_asked() - before == 5
            assert await stored(a) == [e["event_id"] for e in first[:5] + again[2:]]

            # Someone else's message between two chunks breaks nothing.
            await js.publish(out_subject(prefix, a, "like"), b"{}", headers={"Nats-Msg-Id": "foreign"})
            later = events(a, 4)
            await out.publish(tuple(later), chained=True)
            assert out.chains_broken == 0
            assert (await stored(a))[-4:] == [e["event_id"] for e in later]

            # One event refused in the middle: the chain breaks there, the events go again one by one,
            # the refusal is raised, and every other event is stored.
            broken = events(a, 5)
            broken[2]["title"] = "x" * 500
            with pytest.raises(StreamRefused):
                await out.publish(tuple(broken), chained=True)
            assert out.chains_broken == 1
            assert (await stored(a))[-4:] == [e["event_id"] for e in broken[:2] + broken[3:]]
            assert out._acks._pending == {}
        finally:
            await nc.close()

    portal.call(run)


def test_new_namespaces_of_one_publish_get_their_streams_made_at_once(portal, nats_server):
    """On a cluster each stream is a Raft group, tens of ms to make: the
    streams of every new namespace a publish names are made together, not in
    turn. Here a make waits until every make has begun, which only a
    publish that makes them at once gets past; then every event is stored
    in its namespace's stream."""
    import anyio
    import nats

    from kryten_likes.event_out import OutStream

    tag = next(_tags)
    names = [f"together{tag}-{i}" for i in range(5)]

    class MakesWaitForEachOther:
        """The real JetStream context, but a stream's make waits for the others'."""

        def __init__(self, js, n):
            self.js, self.n, self.begun, self.all_begun = js, n, 0, anyio.Event()

        def __getattr__(self, name):
            return getattr(self.js, name)

        async def add_stream(self, config):
            self.begun += 1
            if self.begun == self.n:
                self.all_begun.set()
            await self.all_begun.wait()
            return await self.js.add_stream(config)

    async def run():
        nc = await nats.connect(nats_server.url)
        js = nc.jetstream()
        prefix = f"together{tag}"
        out = OutStream(MakesWaitForEachOther(js, len(names)), prefix, "chan", 1, names[0], nc)
        events = tuple({"event_id": f"{ns}-{i}", "kind": "like", "namespace": ns} for i in range(2) for ns in names)
        try:
            with anyio.fail_after(10):  # (one make at a time waits here for ever)
                await out.publish(events, chained=True)
            for ns in names:
                info = await js.stream_info(out_stream_name(ns))
                assert info.state.messages == 2, ns
        finally:
            await nc.close()

    portal.call(run)
