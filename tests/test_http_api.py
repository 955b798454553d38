"""The JSON API, the live stream and the dashboard's files over HTTP
(docs/contract-social-web.md, "HTTP"), against a daemon on a real
nats-server: every route, every bad parameter, kryten-playlist's shapes
checked with its own response models, the security headers."""

from __future__ import annotations

import json
import urllib.error
import urllib.parse
import urllib.request

import attrs
from conftest import playing, plays_of, wait_until
from kryten_playlist.domain.schemas import CurrentVideoOut, TopLikedOut, TopPlayedOut
from support.events import event_bytes, event_subject, queue_item
from test_http import get, http_config

from kryten_likes.actors.window_counts import hour_label, hour_of
from kryten_likes.http_api import CSP, accepts_gzip

HOSTILE = "<img src=x onerror=alert(1)>"
DAY = 86400


def api(h, path: str) -> tuple[int, dict]:
    status, _, body = get(h, path)
    return status, json.loads(body)


def _queue_and_play(h, vid: str, by: str, uid: int, title: str = "") -> None:
    h.publish_event("queue", queue_item("yt", vid, by=by, uid=uid))
    subject = event_subject(h.config.cytube.channel, "setCurrent")
    h.portal.call(lambda: h.nc.publish(subject, event_bytes("setCurrent", {"uid": uid}, h.config.cytube.channel)))
    n = plays_of(h, vid) + 1
    h.change_media(vid, title=title)
    playing(h, vid)
    wait_until(lambda: plays_of(h, vid) == n)


def _channel(harness, old_title: str = "Old one", now_likers: tuple[str, ...] = ("Ann", "dan")):
    """Two items: v-old liked by three two days ago (curator Bob), v-now
    (a hostile title, curator Carol) playing, liked by ``now_likers``."""
    h = harness(http_config())
    _queue_and_play(h, "v-old", "Bob", 1, old_title)
    for user in ("ann", "ben", "cat"):
        assert h.request("like", {"username": user})["status"] == "ok"
    h.clock.advance(2 * DAY)
    _queue_and_play(h, "v-now", "Carol", 2, HOSTILE)
    for user in now_likers:
        assert h.request("like", {"username": user})["status"] == "ok"
    return h


def test_every_route_answers_as_its_nats_command(harness):
    h = _channel(harness)
    now = h.request("now_playing", {})
    assert api(h, "/api/v1/now-playing") == (200, {k: now[k] for k in ("video_id", "title", "started_at")})
    assert now["title"] == HOSTILE  # JSON carries it as it is; the page shows it as text

    for ranking in ("liked", "played", "curators"):
        for window in ("all", "day", "week", "month"):
            nats = h.request(f"top_{ranking}", {"window": window, "limit": 5})
            status, body = api(h, f"/api/v1/top/{ranking}?window={window}&limit=5")
            assert status == 200 and body == {"window": window, "items": nats["items"]}, (ranking, window)
    assert [i["video_id"] for i in api(h, "/api/v1/top/liked?window=all")[1]["items"]] == ["v-old", "v-now"]
    assert [i["video_id"] for i in api(h, "/api/v1/top/liked?window=day")[1]["items"]] == ["v-now"]
    assert [(i["username"], i["likes_received"], i["plays"]) for i in api(h, "/api/v1/top/curators")[1]["items"]] \
        == [("Bob", 3, 1), ("Carol", 2, 1)]

    status, item = api(h, "/api/v1/items/v-now")
    stats = h.request("stats", {"video_id": "v-now"})["item"]
    assert status == 200 and {k: item[k] for k in stats} == stats
    assert (item["like_count"], item["play_count"], item["title"]) == (2, 1, HOSTILE)
    assert [u["username"] for u in item["likers"]] == ["dan", "ann"] and item["likers_cursor"] is None
    status, unknown = api(h, "/api/v1/items/never-seen")
    assert status == 200 and (unknown["like_count"], unknown["likers"]) == (0, [])

    status, mine = api(h, "/api/v1/users/ANN/likes?limit=1")
    assert status == 200 and (mine["username"], mine["likes_given"]) == ("ann", 2)
    assert [i["video_id"] for i in mine["items"]] == ["v-now"] and mine["cursor"]
    status, more = api(h, "/api/v1/users/ANN/likes?limit=1&cursor=" + urllib.parse.quote(mine["cursor"]))
    assert status == 200 and [i["video_id"] for i in more["items"]] == ["v-old"] and more["cursor"] is None

    status, activity = api(h, "/api/v1/activity")
    hours = activity["hours"]
    assert status == 200 and len(hours) == 168
    assert hours[-1]["hour"] == hour_label(hour_of(h.clock.now()))
    assert (hours[-1]["likes"], hours[-1]["plays"]) == (2, 1)
    assert sum(x["likes"] for x in hours) == 5 and sum(x["plays"] for x in hours) == 2


def test_kryten_playlists_stats_routes_answer_in_its_own_models(harness):
    h = _channel(harness)
    status, current = api(h, "/api/v1/stats/current")
    assert status == 200 and CurrentVideoOut(**current).model_dump() == current
    assert current == {"video_id": "v-now", "title": HOSTILE, "playing": True}
    status, liked = api(h, "/api/v1/stats/top-liked?limit=1")
    assert status == 200 and TopLikedOut(**liked).model_dump() == liked
    assert liked == {"items": [{"video_id": "v-old", "title": "Old one", "count": 3, "thumbnail_url": None}]}
    status, played = api(h, "/api/v1/stats/top-played")
    assert status == 200 and TopPlayedOut(**played).model_dump() == played
    assert sorted(i["video_id"] for i in played["items"]) == ["v-now", "v-old"]


def test_nothing_playing_reads_as_kryten_playlist_says_it(harness):
    h = harness(http_config())
    assert api(h, "/api/v1/stats/current") == (200, {"video_id": None, "title": None, "playing": False})
    assert api(h, "/api/v1/now-playing") == (200, {"video_id": None, "title": None, "started_at": None})
    assert api(h, "/api/v1/stats/top-liked") == (200, {"items": []})


def test_every_bad_parameter_is_a_400_naming_the_field(harness):
    h = harness(http_config())
    too_long = "u" * 500
    cases = {
        "/api/v1/top/liked?window=year": "window",
        "/api/v1/top/played?window=ALL": "window",
        "/api/v1/top/curators?limit=abc": "limit",
        "/api/v1/top/liked?limit=0": "limit",
        "/api/v1/top/liked?limit=101": "limit",
        "/api/v1/top/liked?limit=1.5": "limit",
        f"/api/v1/users/{too_long}/likes": "username",
        "/api/v1/users/ann/likes?limit=-1": "limit",
        "/api/v1/users/ann/likes?cursor=not-a-cursor": "cursor",
        f"/api/v1/items/{'v' * 1001}": "video_id",
        "/api/v1/items/a%00b": "video_id",
        "/api/v1/stats/top-liked?limit=51": "limit",
        "/api/v1/stats/top-played?limit=0": "limit",
        "/api/v1/stats/top-played?limit=ten": "limit",
    }
    for path, field in cases.items():
        status, body = api(h, path)
        assert status == 400 and body["error"] == "invalid_request", (path, body)
        assert body["detail"].startswith(field), (path, body)
    # A cursor of another user is refused, as on NATS.
    h.change_media("v1")
    playing(h, "v1")
    assert h.request("like", {"username": "ann"})["status"] == "ok"
    assert h.request("like", {"username": "bob"})["status"] == "ok"
    h.change_media("v2")
    playing(h, "v2")
    assert h.request("like", {"username": "ann"})["status"] == "ok"
    cursor = api(h, "/api/v1/users/ann/likes?limit=1")[1]["cursor"]
    status, body = api(h, "/api/v1/users/bob/likes?cursor=" + urllib.parse.quote(cursor))
    assert (status, body["error"]) == (400, "invalid_request") and body["detail"].startswith("cursor")


def test_read_only_with_security_headers_on_every_answer(harness):
    h = harness(http_config())
    for path in ("/", "/static/dashboard.js", "/static/dashboard.css", "/api/v1/now-playing", "/nope",
                 "/api/v1/top/liked?window=year", "/health"):
        status, headers, _ = get(h, path)
        assert headers["Content-Security-Policy"] == CSP, path
        assert headers["X-Content-Type-Options"] == "nosniff", path
    assert "'unsafe-inline'" not in CSP and "http" not in CSP
    status, headers, page = get(h, "/")
    assert status == 200 and headers["Content-Type"].startswith("text/html")
    assert b"<script src=\"/static/dashboard.js\"" in page
    assert get(h, "/static/dashboard.js")[1]["Content-Type"].startswith("text/javascript")
    # No write routes: every method but GET (and aiohttp's HEAD) is refused.
    for method in ("POST", "PUT", "DELETE", "PATCH"):
        for path in ("/api/v1/now-playing", "/api/v1/items/v1", "/"):
            assert get(h, path, method=method)[0] == 405, (method, path)


def test_dashboard_off_leaves_the_api(harness):
    c = http_config()
    h = harness(attrs.evolve(c, http=attrs.evolve(c.http, dashboard=False)))
    assert get(h, "/")[0] == 404 and get(h, "/static/dashboard.js")[0] == 404
    assert get(h, "/api/v1/now-playing")[0] == 200


class Stream:
    """An SSE client: reads ``event:``/``data:`` messages as they come."""

    def __init__(self, h, timeout: float = 10.0) -> None:
        url = f"http://127.0.0.1:{h.config.http.port}/api/v1/stream"
        self.resp = urllib.request.urlopen(url, timeout=timeout)
        assert self.resp.headers["Content-Type"] == "text/event-stream"

    def next(self) -> tuple[str, dict]:
        event, data = None, None
        while True:
            line = self.resp.readline().decode()
            assert line, "the stream ended"
            line = line.rstrip("\n")
            if line.startswith("event: "):
                event = line[7:]
            elif line.startswith("data: "):
                data = json.loads(line[6:])
            elif line == "" and event is not None:
                return event, data

    def until(self, kind: str) -> dict:
        while True:
            event, data = self.next()
            if event == kind:
                return data

    def close(self) -> None:
        self.resp.close()


def test_the_stream_carries_likes_unlikes_plays_and_the_item_changing(harness):
    h = harness(http_config())
    s = Stream(h)
    try:
        h.change_media("v1", title=HOSTILE)
        playing(h, "v1")
        play = s.until("play")
        assert (play["kind"], play["video_id"], play["play_count"]) == ("play", "v1", 1)
        assert s.until("now_playing") == {k: v for k, v in h.request("now_playing", {}).items()
                                          if k in ("video_id", "title", "started_at")}
        assert h.request("like", {"username": "Alice"})["like_count"] == 1
        like = s.until("like")
        assert (like["username"], like["video_id"], like["like_count"], like["title"]) == ("Alice", "v1", 1, HOSTILE)
        assert h.request("unlike", {"username": "alice"})["status"] == "ok"
        unlike = s.until("unlike")
        assert (unlike["user"], unlike["like_count"]) == ("alice", 0)
        assert like["event_id"] != unlike["event_id"]
    finally:
        s.close()


def test_at_most_max_stream_clients_then_503(harness):
    c = http_config()
    h = harness(attrs.evolve(c, http=attrs.evolve(c.http, max_stream_clients=2)))
    a, b = Stream(h), Stream(h)
    try:
        status, headers, body = get(h, "/api/v1/stream")
        assert status == 503 and json.loads(body)["error"] == "unavailable" and headers["Retry-After"]
        metrics = get(h, "/metrics")[2]
        assert b"kryten_likes_stream_clients 2.0" in metrics
        assert b"# TYPE kryten_likes_streams_dropped_total counter" in metrics
    finally:
        a.close()
    # The place is given back once the server finds the client gone (writing it an event fails).
    h.change_media("v1")
    playing(h, "v1")
    names = iter(range(10_000))

    def a_third_gets_in() -> bool:
        assert h.request("like", {"username": f"u{next(names)}"})["status"] == "ok"
        try:
            Stream(h, timeout=5).close()
        except urllib.error.HTTPError as exc:
            assert exc.code == 503
            return False
        return True

    try:
        wait_until(a_third_gets_in)
    finally:
        b.close()


def test_a_standby_daemon_says_so_and_the_active_one_answers(harness):
    active = harness(http_config())
    c = active.config
    standby = harness(attrs.evolve(c, http=attrs.evolve(c.http, port=http_config().http.port)))
    assert json.loads(get(standby, "/health")[2])["role"] == "standby"
    for path in ("/api/v1/top/liked", "/api/v1/stream"):
        status, body = api(standby, path)
        assert status == 503 and body["error"] == "unavailable" and "standby" in body["detail"], path
    assert api(active, "/api/v1/top/liked") == (200, {"window": "all", "items": []})


def test_the_stream_takes_no_head_and_gzip_only_when_asked():
    assert accepts_gzip("gzip, deflate, br") and accepts_gzip("GZIP") and accepts_gzip("*")
    assert accepts_gzip("br;q=1.0, gzip;q=0.5")
    assert not accepts_gzip("") and not accepts_gzip("gzip;q=0, identity") and not accepts_gzip("identity")
    assert not accepts_gzip("*;q=0")


def test_head_of_the_stream_is_refused_and_takes_no_place(harness):
    c = http_config()
    h = harness(attrs.evolve(c, http=attrs.evolve(c.http, max_stream_clients=1)))
    for _ in range(3):
        status, _, body = get(h, "/api/v1/stream", method="HEAD")
        assert status == 405 and body == b""
    s = Stream(h)  # the one place is free
    s.close()
    assert get(h, "/api/v1/now-playing", method="HEAD")[0] == 200


def test_a_stream_opened_after_a_play_hears_what_plays_now_first(harness):
    h = harness(http_config())
    first = Stream(h)
    try:
        h.change_media("v1", title="One")
        playing(h, "v1")
        first.until("now_playing")
    finally:
        first.close()
    late = Stream(h)
    try:
        assert late.next() == ("now_playing", {k: v for k, v in h.request("now_playing", {}).items()
                                               if k in ("video_id", "title", "started_at")})
    finally:
        late.close()
