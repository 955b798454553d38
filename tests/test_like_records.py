"""Like records and the queries they serve (docs/contract-social-web.md:
``likers``, ``user_likes``; docs/kv-schema.md: like records and user
totals), against a real nats-server."""

from __future__ import annotations

from conftest import playing, unique_config

from kryten_likes.store import LIKES_BUCKET
from kryten_likes.store.keys import record_key, user_key


def test_a_counted_like_leaves_its_record_and_its_users_totals(harness):
    h = harness()
    h.change_media("abc", title="A song")
    playing(h, "abc")
    assert h.request("like", {"username": "Alice"})["status"] == "ok"
    assert h.request("like", {"username": "alice"})["status"] == "duplicate"  # no second record
    ns = h.config.analytics.namespace
    record = h.kv(LIKES_BUCKET, record_key(ns, "abc", "alice"))
    assert (record["video_id"], record["user"], record["username"]) == ("abc", "alice", "Alice")
    assert record["event_id"] and record["unliked_at"] is None and record["play_started_at"] is not None
    assert (record["likes_given"], record["first_seen_as"]) == (1, "Alice")  # the user's totals ride on it
    assert h.kv(LIKES_BUCKET, user_key(ns, "alice")) is None  # no document of their own


def test_likers_newest_first_page_by_page_and_after_a_restart(harness):
    h = harness()
    h.change_media("abc")
    playing(h, "abc")
    for i, name in enumerate(["Ann", "Bob", "Cat", "Dan", "Eve"]):
        assert h.request("like", {"username": name})["like_count"] == i + 1
        h.clock.advance(2)
    first = h.request("likers", {"limit": 2})  # what plays now
    assert (first["status"], first["video_id"], first["like_count"]) == ("ok", "abc", 5)
    assert [u["username"] for u in first["users"]] == ["Eve", "Dan"]
    second = h.request("likers", {"video_id": "abc", "limit": 2, "cursor": first["cursor"]})
    third = h.request("likers", {"video_id": "abc", "limit": 2, "cursor": second["cursor"]})
    assert [u["username"] for u in second["users"] + third["users"]] == ["Cat", "Bob", "Ann"]
    assert third["cursor"] is None
    h.stop()
    h.start()  # read back from the records in KV
    again = h.request("likers", {"video_id": "abc", "limit": 100})
    assert [u["username"] for u in again["users"]] == ["Eve", "Dan", "Cat", "Bob", "Ann"]
    assert again["users"][0]["liked_at"] > again["users"][-1]["liked_at"]


def test_user_likes_lists_what_a_user_liked_with_their_totals(harness):
    h = harness(unique_config(dedupe_enabled=False))
    for vid in ("v1", "v2", "v3"):
        h.change_media(vid, title=f"Title {vid}")
        playing(h, vid)
        assert h.request("like", {"username": "Zoë"})["status"] == "ok"
        h.clock.advance(5)
    assert h.request("like", {"username": "ZOË"})["status"] == "ok"  # v3 again: counted, one record
    r = h.request("user_likes", {"username": "zoë", "limit": 2})
    assert (r["status"], r["username"], r["likes_given"]) == ("ok", "Zoë", 4)
    assert [(i["video_id"], i["title"]) for i in r["items"]] == [("v3", "Title v3"), ("v2", "Title v2")]
    rest = h.request("user_likes", {"username": "ZOË", "cursor": r["cursor"]})
    assert [i["video_id"] for i in rest["items"]] == ["v1"] and rest["cursor"] is None
    stranger = h.request("user_likes", {"username": "Nobody"})
    assert (stranger["username"], stranger["likes_given"], stranger["items"]) == ("Nobody", 0, [])
    h.stop()
    h.start()  # the totals come back from the user's newest record (no document of their own)
    again = h.request("user_likes", {"username": "ZoË"})
    assert (again["username"], again["likes_given"]) == ("Zoë", 4)


def test_totals_load_from_the_entry_of_highest_revision():
    """A user's totals at start: from whichever holds the highest revision,
    their newest like record or (a store written before totals rode on
    records) their ``users/`` document; records without totals say nothing."""
    from kryten_likes.actors.counter_book import CounterBook
    from kryten_likes.store import StoredEntry

    def record(vid, given, first="Ann", **more):
        v = {"video_id": vid, "user": "ann", "username": "ANN", "liked_at": "2026-01-01T00:00:00Z",
             "likes_given": given, "first_seen_as": first, **more}
        return v

    book = CounterBook("ns")
    book.load(("users", "ann"), StoredEntry(5, {"user": "ann", "username": "Ann", "likes_given": 3}))
    book.load(("liked.v1.ann",), StoredEntry(2, record("v1", 1)))  # older than the document
    assert book.records.totals("ann") == (3, 5)
    book.load(("liked.v2.ann",), StoredEntry(9, record("v2", 4, unliked_at="2026-01-01T00:01:00Z")))
    book.load(("liked.v3.ann",), StoredEntry(7, record("v3", 5)))  # an unliked record still carries totals
    assert book.records.totals("ann") == (4, 9)
    book.load(("liked.v4.ann",), StoredEntry(11, {"video_id": "v4", "user": "ann", "username": "x",
                                                  "liked_at": "2026-01-01T00:00:00Z"}))  # no totals in it
    assert book.records.totals("ann") == (4, 9) and book.records.name_of("ann") == "Ann"


def test_bad_limits_and_cursors_are_refused_naming_the_field(harness):
    h = harness()
    h.change_media("abc")
    playing(h, "abc")
    h.request("like", {"username": "ann"})
    h.request("like", {"username": "bob"})
    page = h.request("likers", {"limit": 1})
    for body, field in [({"limit": 0}, "limit"), ({"limit": 101}, "limit"), ({"cursor": 5}, "cursor"),
                        ({"cursor": "not-a-cursor"}, "cursor"), ({"video_id": "other", "cursor": page["cursor"]},
                                                                  "cursor")]:
        r = h.request("likers", body)
        assert (r["error"], r["detail"].split(":")[0]) == ("invalid_request", field), (body, r)
    r = h.request("user_likes", {"username": "ann", "cursor": page["cursor"]})  # a likers cursor
    assert (r["error"], r["detail"].split(":")[0]) == ("invalid_request", "cursor"), r
    r = h.request("user_likes", {})
    assert (r["error"], r["detail"].split(":")[0]) == ("invalid_request", "username"), r
    other_ns = h.request("likers", {"namespace": "elsewhere", "video_id": "abc", "cursor": page["cursor"]})
    assert other_ns["error"] == "invalid_request", other_ns  # a cursor cannot reach another namespace


def test_likers_with_nothing_playing_is_no_current_item(harness):
    h = harness()
    r = h.request("likers", {})
    assert (r["status"], r["error"]) == ("error", "no_current_item")
    assert h.request("likers", {"video_id": "never-liked"})["users"] == []
