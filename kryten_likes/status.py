"""What the daemon says about itself: ``/health``, the ``stats`` of the
service command (``kryten.likes.command``) and the metrics' snapshot, from
whatever activation runs now (none while standby).
"""

from __future__ import annotations

import json
import time
from typing import Any

from . import __version__
from .bus import send_json
from .operations import check_nats, service_reply
from .store import AtomicBucket


class DaemonStatus:
    def __init__(self, daemon: Any, analytics: AtomicBucket, likes: AtomicBucket) -> None:
        self.daemon = daemon
        self.analytics = analytics
        self.likes = likes
        self.started_at = time.monotonic()
        self.metrics_endpoint: str | None = None  # system.ping's; set once HTTP serves

    @property
    def ns(self) -> str:
        return self.daemon.config.analytics.namespace

    def snapshot(self) -> dict:
        a, live = self.daemon.activation, self.daemon.live
        return {"global": a.global_counters(self.ns) if a else {}, "in_flight": a.bus.in_flight if a else 0,
                "restarts": dict(a.supervisor.restarts) if a else {}, "mailboxes": a.mailbox_depths() if a else {},
                "kv_conflicts": self.analytics.conflicts + self.likes.conflicts,
                "kv_lost": self.analytics.lost_answers + self.likes.lost_answers,
                "stream_clients": len(live.listeners) if live is not None else 0,
                "likes_unstored": a.likes_unstored() if a else 0,
                "streams_dropped": live.dropped if live is not None else 0}

    async def health(self) -> dict:
        # A NATS round trip within 2 s, not the connection flag: a hung server
        # leaves the connection "connected" for minutes.
        d, a = self.daemon, self.daemon.activation
        keeper = d.keeper
        return {"service": "likes", **await check_nats(d.nc), "role": d.role,
                "served_by": keeper.me if d.role == "active" else keeper.served_by,
                "version": __version__, "uptime_seconds": round(time.monotonic() - self.started_at, 1),
                "namespace": self.ns, "channel": d.config.cytube.channel,
                "actor_restarts": dict(a.supervisor.restarts) if a else {}}

    def stats(self) -> dict:
        sn = self.snapshot()
        return {"role": self.daemon.role, "global": sn["global"], "in_flight": sn["in_flight"],
                "actor_restarts": sn["restarts"], "mailbox_depths": sn["mailboxes"],
                "kv_conflicts": sn["kv_conflicts"], "kv_lost_answers": sn["kv_lost"]}

    async def on_service_command(self, msg: Any) -> None:
        try:
            request = json.loads(msg.data)
        except ValueError:
            request = None
        if msg.reply:
            reply = await service_reply(request, self.health, self.stats, metrics_endpoint=self.metrics_endpoint,
                                        uptime_seconds=time.monotonic() - self.started_at)
            await send_json(self.daemon.nc, msg.reply, reply)
