"""kryten-playlist 0.3.2's own like, served on the bench's bus.

Run by the bench with the anchor's own interpreter (a separate venv holding
kryten-playlist==0.3.2), never with the project's:

    ANCHOR_PYTHON bench/anchor_responder.py URL SUBJECT_PREFIX NAMESPACE

In kryten-playlist 0.3.2 the like exists only as the web route
``POST /api/v1/stats/like`` (``web/routes/stats.py: like_current``), behind a
cookie session; its NATS service has no like command. So this calls that
very function, with the service's own KV client (``KvJson`` over kryten-py's
``KrytenClient``, built as ``service.py`` builds it), once per request, each
in its own task as uvicorn would run concurrent HTTP requests. Nothing of
its logic is reimplemented: the current video, the dedupe key and the
read-modify-write of ``like_counts`` are its own.

Subjects: ``{prefix}.like`` {"username"}, ``{prefix}.play`` {"video_id"}
(its own changeMedia handling: ``set_current_video`` + ``increment_play_count``),
``{prefix}.count`` {"video_id"} (what ``like_counts`` holds for it).
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
from datetime import datetime, timedelta, timezone

if sys.path and sys.path[0] == os.path.dirname(os.path.abspath(__file__)):
    sys.path.pop(0)  # run by path: bench/'s modules must not shadow the anchor's imports

import nats  # noqa: E402
from kryten import KrytenClient  # noqa: E402
from kryten_playlist.nats.kv import BUCKET_LIKES, KvJson, KvNamespace  # noqa: E402
from kryten_playlist.web.deps import Session  # noqa: E402
from kryten_playlist.web.routes.stats import increment_play_count, like_current, set_current_video  # noqa: E402


async def main(url: str, prefix: str, namespace: str) -> None:
    client = KrytenClient({"nats": {"servers": [url]},
                           "channels": [{"domain": "cytu.be", "channel": "bench"}]})
    await client.connect()
    kv = KvJson(client, KvNamespace(namespace))
    nc = await nats.connect(url, name="bench-anchor")
    tasks: set[asyncio.Task] = set()
    expires = datetime.now(timezone.utc) + timedelta(days=1)

    async def like(msg) -> None:
        try:
            user = json.loads(msg.data)["username"]
            session = Session(session_id=f"bench-{user}", username=user, role="viewer", expires_at=expires)
            out = await like_current(None, session, kv)
            await msg.respond(out.model_dump_json().encode())
        except Exception as exc:  # an answer for every request, as a web server would give
            await msg.respond(json.dumps({"status": "error", "error": f"{type(exc).__name__}: {exc}"}).encode())

    async def on_like(msg) -> None:
        t = asyncio.create_task(like(msg))
        tasks.add(t)
        t.add_done_callback(tasks.discard)

    async def on_play(msg) -> None:
        vid = json.loads(msg.data)["video_id"]
        await set_current_video(kv, vid, f"Title of {vid}")
        await increment_play_count(kv, vid)
        await msg.respond(b'{"status":"ok"}')

    async def on_count(msg) -> None:
        body = json.loads(msg.data) if msg.data else {}
        counts = await kv.get_json(BUCKET_LIKES, "like_counts") or {}
        await msg.respond(json.dumps({"status": "ok", "like_count": counts.get(body.get("video_id"), 0)}).encode())

    await nc.subscribe(f"{prefix}.like", cb=on_like)
    await nc.subscribe(f"{prefix}.play", cb=on_play)
    await nc.subscribe(f"{prefix}.count", cb=on_count)
    await nc.flush()
    print("ready", flush=True)
    await asyncio.Event().wait()


if __name__ == "__main__":
    try:
        asyncio.run(main(*sys.argv[1:4]))
    except KeyboardInterrupt:
        pass
