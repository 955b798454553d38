"""How `kryten-likes doctor` judges what the bus said: one pure function per
check, each giving one ``Finding``.

A finding is ``ok``; ``warn`` (the daemon runs, but something is off);
``FAIL`` (the daemon cannot work as it should); or ``skip`` (the check could
not be made, e.g. buckets without JetStream). Nothing here raises for a bus
that is wrong: every problem is a finding, in words for the person who
fixes it.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from datetime import datetime
from typing import Any

from attrs import frozen

from .config import Config
from .discovery import apply_owner_warning
from .doctor_bus import BUCKETS, BusFacts, ClockReading

__all__ = ["FAIL", "OK", "SKIP", "WARN", "Finding", "examine", "exit_code", "judge_account", "judge_clock",
           "judge_features", "judge_jetstream", "judge_owner", "judge_services", "judge_version"]

OK, WARN, FAIL, SKIP = "ok", "warn", "FAIL", "skip"
EXIT_OK, EXIT_PROBLEM = 0, 1

ATOMIC_BATCHES_SINCE = (2, 12)  # ADR-50 atomic batch publish
CLOCK_TOLERANCE_SECONDS = 2.0
# The daemon's own bucket settings (store/buckets.py): one value per key,
# direct get; no description or metadata.
OUR_HISTORY = 1
# kryten-py's get_or_create_kv_store describes a bucket it makes so.
KRYTEN_PY_DESCRIPTION = "Kryten {bucket}"
STREAM_NOT_FOUND = 10059
JETSTREAM_NOT_ENABLED_FOR_ACCOUNT = 10039


@frozen
class Finding:
    """One check's verdict, in words for the person reading it."""

    check: str
    status: str
    detail: str


def examine(facts: BusFacts, config: Config) -> list[Finding]:
    """Every check's finding, in the order a person fixes things."""
    findings = [Finding("server", OK, f"{facts.url} answers (nats-server {facts.version})"),
                judge_jetstream(facts.account),
                judge_version(facts.version)]
    if findings[1].status != OK:
        findings += [Finding(check, SKIP, "not checked without JetStream")
                     for check in ("account", *(f"bucket {b}" for b in BUCKETS), *(f"owner {b}" for b in BUCKETS),
                                   "clock")]
    else:
        missing = sum(1 for b in BUCKETS if _absent(facts.streams.get(b))) + (facts.event_stream is None)
        findings.append(judge_account(facts.account or {}, missing, config.storage.replicas))
        findings += [judge_features(b, facts.streams.get(b)) for b in BUCKETS]
        findings += [judge_owner(b, facts.streams.get(b), config.storage.replicas) for b in BUCKETS]
        findings.append(judge_clock(facts.clock))
    findings.append(judge_services(facts.services, config))
    return findings


def exit_code(findings: Iterable[Finding]) -> int:
    return EXIT_OK if all(f.status in (OK, SKIP) for f in findings) else EXIT_PROBLEM


def judge_jetstream(account: Mapping[str, Any] | None) -> Finding:
    if account is None:
        return Finding("jetstream", FAIL, "JetStream is off on this server: kryten-likes keeps every count in "
                                          "JetStream KV. Start nats-server with -js (or a `jetstream {}` block "
                                          "in its config)")
    error = account.get("error")
    if isinstance(error, dict):
        if error.get("err_code") == JETSTREAM_NOT_ENABLED_FOR_ACCOUNT:
            return Finding("jetstream", FAIL, "JetStream is on, but not for the account kryten-likes connects as: "
                                              "enable it for that account (`jetstream: enabled` in the server's "
                                              "accounts config)")
        return Finding("jetstream", FAIL, f"the JetStream API refused: {error.get('description')}")
    level = (account.get("api") or {}).get("level")
    return Finding("jetstream", OK, "on" + (f" (API level {level})" if level is not None else ""))


def judge_version(version: str) -> Finding:
    match = re.match(r"(\d+)\.(\d+)", version)
    if match is None:
        return Finding("version", WARN, f"cannot tell the server's version ({version!r}); atomic batches need "
                                        "nats-server 2.12 or newer")
    if (int(match[1]), int(match[2])) < ATOMIC_BATCHES_SINCE:
        return Finding("version", FAIL, f"nats-server {version} is too old: kryten-likes writes every count in "
                                        "an atomic batch (ADR-50), which came with nats-server 2.12. "
                                        "Upgrade the server to 2.12 or newer")
    return Finding("version", OK, f"{version} (atomic batches need 2.12 or newer)")


def judge_account(account: Mapping[str, Any], missing_streams: int, replicas: int) -> Finding:
    """Room in the JetStream account for what the daemon keeps and makes.

    With tiered limits (per replica count) the tier the daemon's streams
    fall in is the one that counts.
    """
    tier = (account.get("tiers") or {}).get(f"R{replicas}")
    usage = tier if isinstance(tier, dict) else account
    limits = usage.get("limits") or {}
    problems: list[str] = []
    worries: list[str] = []
    streams, max_streams = usage.get("streams", 0), limits.get("max_streams", -1)
    # For streams and consumers 0 means no limit; for storage -1 does.
    if max_streams > 0 and max_streams - streams < missing_streams:
        problems.append(f"room for {max(max_streams - streams, 0)} more stream(s) and kryten-likes makes "
                        f"{missing_streams} (two buckets and its event stream)")
    consumers, max_consumers = usage.get("consumers", 0), limits.get("max_consumers", -1)
    if max_consumers > 0 and consumers >= max_consumers:
        problems.append("no room for another consumer: kryten-likes reads its events and its buckets through "
                        "consumers")
    stored, max_storage = usage.get("storage", 0), limits.get("max_storage", -1)
    if max_storage == 0:
        problems.append("no file storage allowed, and every count is kept in file storage")
    elif max_storage > 0 and stored >= 0.9 * max_storage:
        worries.append(f"file storage {_bytes(stored)} of {_bytes(max_storage)} used: writes fail when full")
    if limits.get("max_bytes_required") and missing_streams:
        problems.append("the account requires every stream to set max_bytes, and kryten-likes makes its "
                        "buckets and event stream without: raise that requirement for this account")
    summary = (f"storage {_bytes(stored)} of {_limit(max_storage, _bytes)}, "
               f"memory {_bytes(usage.get('memory', 0))} of {_limit(limits.get('max_memory', -1), _bytes)} "
               f"(kryten-likes keeps nothing in memory streams), streams {streams} of {_limit(max_streams, str, 0)}, "
               f"consumers {consumers} of {_limit(max_consumers, str, 0)}")
    if problems:
        return Finding("account", FAIL, "; ".join(problems) + f" ({summary})")
    if worries:
        return Finding("account", WARN, "; ".join(worries) + f" ({summary})")
    return Finding("account", OK, summary)


def judge_features(bucket: str, stream: Mapping[str, Any] | None) -> Finding:
    check = f"bucket {bucket}"
    if _absent(stream):
        return Finding(check, OK, "not there yet: kryten-likes makes it at start, with atomic batches and "
                                  "per-message TTL")
    if "error" in (stream or {}):
        return Finding(check, FAIL, f"cannot read the stream KV_{bucket}: {stream['error'].get('description')}")
    config = stream.get("config") or {}
    missing = [flag for flag in ("allow_atomic", "allow_msg_ttl") if not config.get(flag)]
    if not missing:
        return Finding(check, OK, "atomic batches and per-message TTL on")
    return Finding(check, FAIL, (
        f"an old-style bucket: its stream KV_{bucket} was made without {' and '.join(missing)}. "
        "kryten-likes writes every count in an atomic batch and lets dedupe claims expire by message TTL. "
        "To fix: start kryten-likes once against this server, which turns them on in place at start "
        "(nats-server 2.12+, and a user allowed to update that stream); or update the stream's config with "
        "allow_atomic and allow_msg_ttl true. Its keys stay as they are"))


def judge_owner(bucket: str, stream: Mapping[str, Any] | None, replicas: int) -> Finding:
    """Who made the bucket, and whether its settings can keep the counts."""
    check = f"owner {bucket}"
    if _absent(stream):
        return Finding(check, OK, "nobody yet: kryten-likes will make it")
    if "error" in (stream or {}):
        return Finding(check, SKIP, "not checked: its stream cannot be read")
    config = stream.get("config") or {}
    description = config.get("description") or ""
    marks = {k: v for k, v in (config.get("metadata") or {}).items() if not k.startswith("_nats.")}
    if marks:
        maker = "marked " + ", ".join(f"{k}={v}" for k, v in sorted(marks.items()))
    elif description == KRYTEN_PY_DESCRIPTION.format(bucket=bucket):
        maker = (f"made by a kryten-py service (description {description!r} is kryten-py's "
                 "get_or_create_kv_store default; kryten-playlist makes its buckets so)")
    elif description:
        maker = f"described {description!r}"
    else:
        differences = _differences_from_ours(config)
        maker = ("made by kryten-likes, or with its settings" if not differences else
                 "made by another service, with a different config: " + ", ".join(differences))
    problems, worries = _risks(config, replicas)
    text = "; ".join([maker, *problems, *worries])
    return Finding(check, FAIL if problems else WARN if worries else OK, text)


def _differences_from_ours(config: Mapping[str, Any]) -> list[str]:
    found = []
    if config.get("max_msgs_per_subject") != OUR_HISTORY:
        found.append(f"history {config.get('max_msgs_per_subject')} (kryten-likes: {OUR_HISTORY})")
    if not config.get("allow_direct"):
        found.append("no direct get (kryten-likes: direct get)")
    return found


def _risks(config: Mapping[str, Any], replicas: int) -> tuple[list[str], list[str]]:
    problems, worries = [], []
    max_age = config.get("max_age") or 0  # nanoseconds
    if max_age > 0:
        problems.append(f"its entries expire after {max_age / 1e9:g} s and the counts with them: set the "
                        "stream's max_age to 0")
    if config.get("storage") == "memory":
        problems.append("kept in memory: a server restart loses every count; make it again with file storage")
    for key, what in (("max_bytes", "bytes"), ("max_msgs", "messages")):
        if (config.get(key) or -1) > 0:
            worries.append(f"holds at most {config[key]} {what}: writes are refused once full")
    if (config.get("num_replicas") or 1) < replicas:
        worries.append(f"{config.get('num_replicas') or 1} replica(s) where [storage] replicas asks for {replicas}")
    return problems, worries


def judge_clock(reading: ClockReading | None) -> Finding:
    if reading is None:
        return Finding("clock", SKIP, "not measured: no stream on the server yet to tell its time "
                                      "(kryten-likes makes its buckets at start)")
    try:
        server = datetime.fromisoformat(reading.server_time).timestamp()
    except ValueError:
        return Finding("clock", SKIP, f"not measured: the server's time {reading.server_time!r} is unreadable")
    # The server stamped its answer somewhere between asking and answering.
    slack = (reading.answered_at - reading.asked_at) / 2
    skew = server - (reading.asked_at + slack)
    way = "ahead of" if skew > 0 else "behind"
    if abs(skew) - slack > CLOCK_TOLERANCE_SECONDS:
        return Finding("clock", WARN, (
            f"the server's clock is {abs(skew):.1f} s {way} this machine's: the documents' times and the end "
            "of a dedupe window are this machine's, the claims' TTL the server's. Sync both with NTP"))
    return Finding("clock", OK, f"within {abs(skew) + slack:.2f} s of the server's (its answer on {reading.stream})")


def judge_services(services: Mapping[str, Mapping[str, Any]], config: Config) -> Finding:
    heard = ", ".join(
        name + (f" {seen['version']}" if seen.get("version") else "")
        + (f" (x{seen['answers']})" if (seen.get("answers") or 1) > 1 else "")
        for name, seen in sorted(services.items())) or "none answered discovery"
    bridge = "" if "robot" in services else (
        "; no kryten-robot (the bridge) answered: without it no plays, queue events or chat reach kryten-likes")
    warning = apply_owner_warning(services, config.queue.apply_enabled, config.nats.subject_prefix)
    if warning is not None:
        return Finding("services", WARN, f"{heard}. {warning}")
    return Finding("services", OK, heard + bridge)


def _absent(stream: Mapping[str, Any] | None) -> bool:
    error = (stream or {}).get("error")
    return not stream or (isinstance(error, dict) and error.get("err_code") == STREAM_NOT_FOUND)


def _limit(value: int, show: Any, unlimited_at_or_below: int = -1) -> str:
    return "unlimited" if value <= unlimited_at_or_below else show(value)


def _bytes(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if n < 1024 or unit == "GiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    raise AssertionError("unreachable")
