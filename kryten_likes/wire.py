"""Reply bodies of the wire contract (docs/contract.md): every reply carries
``correlation_id``, ``status``, ``error`` and, when useful, ``detail``."""

from __future__ import annotations

import json
from typing import Any

from .contract import good_correlation_id  # the rule lives in kryten_likes.contract
from .messages import ReplyTo
from .effects import Reply


def correlation_id_of(data: bytes) -> str | None:
    """The correlation_id of a raw request, when it is a good one: for the
    replies sent before the gateway has read the request (at capacity)."""
    try:
        cid = json.loads(data).get("correlation_id")
    except Exception:
        return None
    return cid if good_correlation_id(cid) else None


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
