"""Applies + CounterWriter across writer restarts: the interleavings that once
broke the queue-apply contract (bugs 1-5 of ``support.applies_machine``),
one by hand each.
"""

from __future__ import annotations

from kryten_likes.actors.analytics_changes import expectations_key
from kryten_likes.messages import EnqueueStarted, EnqueuesInFlight, QueueConfirmed

from support.applies_machine import land_all, machine
from support.counter_writer_rig import NS


# --- once bugs, one interleaving each (now fixed) ----------------------------------------------------


def test_timed_out_item_queued_by_the_bridge_is_counted_across_a_writer_restart():
    m = machine()
    m.apply("p1", ["m1"])
    [ask] = m.outstanding()
    m.publish_ask(ask)  # the bridge queues m1 and publishes its event before answering
    m.feed_delivers(1)
    land_all(m)  # EnqueueStarted, then the event: stored as early in ns/ns1/queue/expected
    assert m.kv.value(expectations_key(NS))["early"] == {"yt:m1": [100]}
    m.answer(ask, "timeout", queued=True)  # the answer never came: EnqueueRefused to the writer
    m.deliver(len(m.box))  # its batch (which would count the early event) is in flight...
    m.restart({gid: "lost" for gid in m.in_flight}, in_hand=0)  # ...when the writer dies
    m.settle()
    assert m.requests["inbox.1"].reply["error"] == "enqueue_failed"
    # The bridge queued m1 once; the daemon counts it never, and the early event
    # stays in queue/expected until the next daemon start.
    assert m.queue_count("m1") == 1, m.kv.value(expectations_key(NS))


def test_enqueue_started_waiting_in_the_mailbox_is_announced_once_after_a_restart():
    m = machine()
    m.apply("p1", ["m1"])  # EnqueueStarted(m1) waits in the writer's mailbox
    m.restart({}, in_hand=0)  # the writer dies; apply announces m1 again behind it
    assert [type(x) for x in m.box] == [EnqueueStarted, EnqueuesInFlight, EnqueueStarted]
    m.foreign_queue_event("m1")  # someone else queues m1
    [ask] = m.outstanding()
    m.publish_ask(ask)  # the bridge queues ours too, its event before its answer
    m.feed_delivers(2)
    land_all(m)  # two enqueues of m1 "in flight": both events noted early
    m.answer(ask, "ok")
    m.settle()
    # The bridge queued m1 twice (someone else's, ours); one event stays early forever.
    assert m.queue_count("m1") == 2, m.kv.value(expectations_key(NS))


def test_confirmation_waiting_in_the_mailbox_does_not_hide_another_enqueue_of_the_media():
    m = machine()
    m.apply("p1", ["m2"])
    m.apply("p2", ["m2"])  # two applies enqueue m2 at once
    m.deliver(2)
    a1, a2 = m.outstanding()
    m.answer(a2, "ok", event="now")  # QueueConfirmed(a-2) waits in the writer's mailbox
    m.restart({}, in_hand=0)  # apply announces a-1's m2 and sends a-2's confirmation again
    assert [type(x) for x in m.box] == [QueueConfirmed, EnqueuesInFlight, EnqueueStarted, QueueConfirmed]
    m.publish_ask(a1)  # the bridge queues a-1's m2 (its event before its answer)
    m.feed_delivers(2)
    land_all(m)  # a-1's event finds no enqueue of m2 in flight: counted as someone else's
    m.answer(a1, "ok")  # ...and counted again when confirmed
    m.settle()
    assert m.queue_count("m2") == 2


def test_own_event_reread_before_the_reannounce_is_counted_once():
    m = machine()
    m.apply("p1", ["m1"])
    m.deliver(1)  # the writer knows m1 is being enqueued
    [ask] = m.outstanding()
    m.publish_ask(ask)  # the bridge queues m1; its event is in the stream
    # The writer dies; the feed's new reading hands the event over before the apply
    # actor has stepped WriterRestarted (two independent paths: nothing orders them).
    m.restart({}, in_hand=0, reread_first=1)
    m.answer(ask, "ok")
    m.settle()
    assert m.requests["inbox.1"].reply["enqueued_count"] == 1
    assert m.queue_count("m1") == 1


def test_events_of_a_late_landing_batch_are_not_counted_again():
    m = machine()
    m.apply("p1", ["m2"])
    for _ in range(5):
        m.foreign_queue_event("m1")
    m.feed_delivers(5)
    m.deliver(len(m.box))  # EnqueueStarted(m2), five events: one batch in flight
    [batch] = m.in_flight
    [ask] = m.outstanding()
    m.answer(ask, "ok", event="late")  # QueueConfirmed(m2) waits in the mailbox
    # The writer dies; its batch lands after the new writer read KV. The dead writer
    # had stored nothing, so the feed reads again from event 1.
    m.restart({batch: "late"}, in_hand=0)
    m.settle()
    # The new writer's first batch (the confirmation, twice, and events 1-3) conflicts and
    # drops 1-3 as stored; events 4 and 5, still pending, are counted again.
    assert m.queue_count("m1") == 5
    assert m.queue_count("m2") == 1


def test_confirmation_said_twice_and_held_at_a_restart_is_not_carried_as_in_flight():
    m = machine()
    m.apply("p1", ["m1"])
    [ask] = m.outstanding()
    m.answer(ask, "ok")  # QueueConfirmed(a-1) waits in the mailbox behind EnqueueStarted
    m.restart({}, in_hand=0)  # apply says the confirmation again: ES, QC, QC
    assert [type(x) for x in m.box] == [EnqueueStarted, QueueConfirmed, EnqueuesInFlight, QueueConfirmed]
    m.deliver(3)  # EnqueueStarted, the confirmation (held back until apply says what is in flight): in flight
    [batch] = m.in_flight
    m.finish(batch, foreign_write=False)
    m.deliver(1)  # landed: a-1 is done
    m.deliver(1)  # the confirmation said twice: in the next batch, in flight...
    assert not m.apps.active and [type(c) for c in m.held_changes()] == [QueueConfirmed]
    m.restart({gid: "lost" for gid in m.in_flight}, in_hand=0)  # ...when the writer dies again
    m.foreign_queue_event("m1")  # someone else queues m1
    m.settle()
    # a-1's m1 and someone else's; the latter stays early behind a phantom enqueue.
    assert m.queue_count("m1") == 2, (m.writer.analytics.enqueues, m.kv.value(expectations_key(NS)))
