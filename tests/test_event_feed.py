"""The event feed (events.py) hands the bridge's events on the moment the
stream has them, against a real nats-server.

A fetch of many events waits, after the first, until it has them all or
its pull request ends. An event delivered to a pull request that is still
open on the server (nats-py's fetch can leave one behind; its own comments
say so) lands in the feed's inbox while the feed waits on a request of its
own, and such a fetch held it until that request expired: in the bench's
rotation row a play switch took 0.62–0.67 s about once a run. An idle feed
now waits for one event at a time (``_fetch_one``: it returns the moment
one comes), and asks for many only while events keep coming.
"""

from __future__ import annotations

import itertools
import json
import time

import anyio

from kryten_likes.events import EventFeed, open_event_source
from kryten_likes.messages import MediaChanged

_tags = itertools.count()


def _change_media(video_id: str) -> bytes:
    return json.dumps({"event_name": "changeMedia", "payload": {"id": video_id, "title": video_id, "seconds": 60,
                                                                "type": "yt", "currentTime": 0}}).encode()


def test_an_event_a_left_open_pull_request_takes_reaches_the_actors_at_once(portal, nats_server):
    import nats

    tag = next(_tags)

    async def run():
        nc = await nats.connect(nats_server.url)
        js = nc.jetstream()
        source = await open_event_source(js, f"feed{tag}", f"feedns{tag}", 1)
        routed: list[tuple[float, object]] = []
        arrived = [anyio.Event(), anyio.Event()]
        feed: EventFeed

        class Actors:
            """The router's one method the feed uses; the first event leaves a
            pull request open on the server before the feed asks again."""

            async def send_with_room(self, msg):
                routed.append((time.monotonic(), msg))
                arrived[len(routed) - 1].set()
                if len(routed) == 1:
                    psub = feed._psub  # (nats-py's own subjects: the consumer's next-message API, the feed's inbox)
                    await nc.publish(psub._nms, json.dumps({"batch": 256, "expires": 5_000_000_000}).encode(),
                                     reply=psub._deliver)
                    await nc.flush()

        feed = EventFeed(js, source, Actors(), 1, lambda: 1)

        async def waiting_requests() -> int:
            return (await js.consumer_info(source.stream, source.durable)).num_waiting

        try:
            async with anyio.create_task_group() as tg:
                tg.start_soon(feed.run)
                await js.publish(source.subjects[0], _change_media("first"))
                with anyio.fail_after(10):
                    await arrived[0].wait()
                    # The left-open request and the feed's own are both waiting at the server.
                    while await waiting_requests() < 2:
                        pass
                sent = time.monotonic()
                await js.publish(source.subjects[0], _change_media("second"))
                with anyio.fail_after(10):
                    await arrived[1].wait()
                tg.cancel_scope.cancel()
        finally:
            await nc.close()
        (_, first), (at, second) = routed
        assert isinstance(first, MediaChanged) and isinstance(second, MediaChanged)
        assert second.media.video_id == "second"
        assert at - sent < 0.5, f"the event reached the actors {1000 * (at - sent):.0f} ms after it was stored"

    portal.call(run)
