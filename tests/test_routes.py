"""The routing table (``routes.INBOXES``): every message has one actor that
takes it, every actor of the daemon has an inbox, and every request carries
its envelope."""

from __future__ import annotations

import inspect
from collections import Counter

import attrs

from kryten_likes import messages, queue_messages
from kryten_likes.cast import ACTORS
from kryten_likes.messages import ReplyTo, Tick
from kryten_likes.routes import INBOXES, MAILBOX, REQUESTS, is_request, mailbox_of

MESSAGES = [c for m in (messages, queue_messages) for _, c in inspect.getmembers(m, inspect.isclass)
            if c.__module__ == m.__name__ and c not in (ReplyTo, Tick)]


def test_every_message_goes_to_exactly_one_actor():
    listed = Counter(c for classes in INBOXES.values() for c in classes)
    assert [c for c, n in listed.items() if n > 1] == []
    assert sorted(c.__name__ for c in MESSAGES if c not in MAILBOX) == []


def test_the_inboxes_are_the_daemons_actors():
    assert set(INBOXES) == set(ACTORS)


def test_every_request_carries_one_envelope():
    for cls in REQUESTS:
        fields = attrs.fields(cls)
        assert fields[0].name == "reply", cls
    carriers = [c for c in MESSAGES if any(f.name == "reply" for f in attrs.fields(c))]
    assert sorted(c.__name__ for c in carriers) == sorted(c.__name__ for c in REQUESTS)


def test_a_message_no_actor_takes_is_a_clear_error():
    import pytest

    with pytest.raises(TypeError, match="no actor takes str"):
        mailbox_of("hello")
    assert not is_request(Tick())
