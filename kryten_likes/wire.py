"""Reply bodies of the wire contract (docs/contract.md): every reply carries
``correlation_id``, ``status``, ``error`` and, when useful, ``detail``."""

from __future__ import annotations

from typing import Any

from .messages import Reply, ReplyTo


def ok(to: ReplyTo, **fields: Any) -> Reply:
    return Reply(to, {"correlation_id": to.correlation_id, "status": "ok", "error": None, **fields})


def duplicate(to: ReplyTo, **fields: Any) -> Reply:
    return Reply(to, {"correlation_id": to.correlation_id, "status": "duplicate", "error": None, **fields})


def error(to: ReplyTo, word: str, detail: str | None = None, **fields: Any) -> Reply:
    body: dict[str, Any] = {"correlation_id": to.correlation_id, "status": "error", "error": word}
    if detail is not None:
        body["detail"] = detail
    body.update(fields)
    return Reply(to, body)
