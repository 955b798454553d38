"""One-for-one supervision, as in OTP.

The actors are data: one ``ActorSpec`` row each (``cast.Cast.rows``): a
core factory, the shell that runs it, whether it gets ticks, and what the
others must do when it dies. Each actor runs inside ``keep_alive``: when an
incarnation raises, the requests it held are answered ``internal_error``
(nobody waits forever), the other actors are told what they must forget (its
``orphans``, then its row's ``after_crash``), and a fresh incarnation — with
state rebuilt from KV — takes over the *same* mailbox after an exponential
back-off. More than ``max_restarts`` failures within ``period`` seconds and
the supervisor gives up: ``SupervisorGaveUp`` ends the daemon with a non-zero
exit, and systemd (or whatever runs it) decides what happens next.

The policy is data and the intensity check is a pure function.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import Any

import anyio
import attrs
from anyio.abc import ObjectReceiveStream

from . import wire
from .actors.shell import ActorShell, FaultHook
from .bus import Bus
from .mailboxes import Router
from .clock import Clock

log = logging.getLogger(__name__)


class SupervisorGaveUp(Exception):
    """An actor failed more often than the restart policy allows."""


@attrs.frozen
class RestartPolicy:
    max_restarts: int = 5
    period_seconds: float = 10.0
    backoff_initial_seconds: float = 0.05
    backoff_max_seconds: float = 2.0


def restart_allowed(failures: tuple[float, ...], now: float, policy: RestartPolicy) -> tuple[bool, tuple[float, ...]]:
    """Record a failure at ``now``; may the actor restart? Returns the trimmed window."""
    window = tuple(t for t in failures if now - t < policy.period_seconds) + (now,)
    return len(window) <= policy.max_restarts, window


def backoff(restarts_in_window: int, policy: RestartPolicy) -> float:
    return min(policy.backoff_initial_seconds * 2 ** max(0, restarts_in_window - 1), policy.backoff_max_seconds)


@attrs.frozen
class ActorSpec:
    name: str
    core: Callable[[], Awaitable[Any]]  # a new core, its state loaded
    shell: Callable[..., ActorShell] = ActorShell  # (name, core, router, bus, clock, fault) -> its shell
    ticks: bool = False  # a Tick every tick_seconds (expiry, eviction, snapshots)
    after_crash: Callable[[ActorShell], Any] | None = None  # beyond answering what it held


class Supervisor:
    def __init__(self, specs: list[ActorSpec], inboxes: dict[str, ObjectReceiveStream], router: Router,
                 bus: Bus, clock: Clock, policy: RestartPolicy, *, fault: FaultHook | None = None,
                 tick_seconds: float = 1.0) -> None:
        self.specs = specs
        self.fault = fault
        self.tick_seconds = tick_seconds
        self.inboxes = inboxes
        self.router = router
        self.bus = bus
        self.clock = clock
        self.policy = policy
        self.restarts: dict[str, int] = {s.name: 0 for s in specs}
        self.incarnations: dict[str, ActorShell] = {}

    async def run(self, task_status=anyio.TASK_STATUS_IGNORED) -> None:
        async with anyio.create_task_group() as tg:
            for spec in self.specs:
                await tg.start(self.keep_alive, spec)
            tg.start_soon(self.ticker)
            task_status.started()

    async def ticker(self) -> None:
        ticked = [s.name for s in self.specs if s.ticks]
        while True:
            await anyio.sleep(self.tick_seconds)  # a periodic timer, not synchronisation
            for name in ticked:
                self.router.tick(name)  # skipped while a tick still waits there

    async def keep_alive(self, spec: ActorSpec, task_status=anyio.TASK_STATUS_IGNORED) -> None:
        failures: tuple[float, ...] = ()
        started = False
        while True:
            shell: ActorShell | None = None
            try:
                shell = spec.shell(spec.name, await spec.core(), self.router, self.bus, self.clock, self.fault)
                self.incarnations[spec.name] = shell
                if not started:
                    started = True
                    task_status.started()
                await shell.run(self.inboxes[spec.name])
                return
            except Exception as exc:
                log.error("actor %s crashed: %r", spec.name, exc, exc_info=not isinstance(exc, AssertionError))
                if shell is not None:
                    await self.bury(shell)
                    if spec.after_crash is not None:
                        spec.after_crash(shell)
                ok, failures = restart_allowed(failures, self.clock.now(), self.policy)
                if not ok:
                    raise SupervisorGaveUp(
                        f"{spec.name} failed {len(failures)} times within {self.policy.period_seconds}s") from exc
                self.restarts[spec.name] += 1
                # Back-off between restarts is a delay by design, not synchronisation.
                await anyio.sleep(backoff(len(failures), self.policy))

    async def bury(self, shell: ActorShell) -> None:
        try:
            replies, messages = shell.orphans()
        except Exception:  # a broken core must not stop the answers
            log.exception("could not list what %s held", shell.name)
            return
        for to in replies:
            await self.bus.reply(wire.error(to, "internal_error", f"{shell.name} failed with the request inside"))
        for m in messages:
            self.router.send(m)
