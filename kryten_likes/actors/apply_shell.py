"""apply_shell: the I/O of the ``apply`` actor (its core is ``apply.Applies``):
the bridge asked through kryten-py, each answer sent back to the mailbox."""

from __future__ import annotations

import logging
from typing import Any

import anyio
import anyio.abc
import nats.errors

from ..messages import EnqueueAnswered

from ..effects import Enqueue
from .shell import ActorShell

log = logging.getLogger(__name__)


class ApplyShell(ActorShell):
    """Asks the bridge through kryten-py (``KrytenClient.add_media``: a request
    on ``kryten.robot.command`` that the bridge answers once CyTube has queued
    the item, or refused it). Each ask runs as a child task, so other applies
    keep moving; the answer comes back through the mailbox."""

    def __init__(self, *args: Any, kryten: Any, channel: str, timeout: float = 8.0, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.kryten = kryten
        self.channel = channel
        self.timeout = timeout
        self._tg: anyio.abc.TaskGroup | None = None

    async def run(self, inbox: Any, task_status: Any = anyio.TASK_STATUS_IGNORED) -> None:
        async with anyio.create_task_group() as tg:
            self._tg = tg
            await super().run(inbox, task_status=task_status)
            tg.cancel_scope.cancel()

    async def perform_other(self, effect: Any) -> None:
        if isinstance(effect, Enqueue):
            assert self._tg is not None
            self._tg.start_soon(self._enqueue, effect)
        else:
            await super().perform_other(effect)

    async def _enqueue(self, e: Enqueue) -> None:
        ok, reason = False, None
        try:
            answer = await self.kryten.add_media(self.channel, e.item.media_type, e.item.video_id,
                                                 timeout=self.timeout)
            # The bridge's top-level success is true even when the add failed.
            data = answer.get("data") if isinstance(answer, dict) else None
            ok = isinstance(data, dict) and data.get("success") is True
            if not ok:
                reason = str((data or {}).get("error") or (answer or {}).get("error") or "refused")[:200]
        except TimeoutError:
            reason = "timeout"
        except nats.errors.NoRespondersError:
            reason = "no_bridge"
        except Exception as exc:  # the bridge's trouble is this item's failure, not ours
            log.warning("add_media %s failed: %r", e.item.video_id, exc)
            reason = "bridge_error"
        self.router.send(EnqueueAnswered(e.apply_id, e.index, ok, reason))
