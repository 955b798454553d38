"""Chat commands: ``!like``, ``!unlike``, ``!mylikes`` and ``!top [window]``.

The pure parts first (``chat_request``: a chat line → the request the gateway
would build; ``ChatVoice``: what the bot says, with explicit ``now`` values),
then the whole path through a daemon against a real nats-server: a chatMsg
RawEvent in, a ``say`` command to the bridge out."""

from __future__ import annotations

import itertools
import json

import pytest

from conftest import playing, wait_until

from kryten_likes.chat import LINE_MAX, PART_MAX, ChatLine, ChatVoice, chat_request, cut
from kryten_likes.config import ChatSection, ConfigError, parse_config
from kryten_likes.messages import LikeRequested, ReplyTo, TopAsked, UnlikeRequested, UserLikesAsked
from support.configs import merged, unique_sections
from support.events import event_bytes, event_subject

NS = "default"
CFG = ChatSection(bot_username="KrytenBot")


def req(message: str, user: str = "Alice", shadow: bool = False, cfg: ChatSection = CFG):
    return chat_request(ChatLine(user, message, shadow), cfg, NS)


# --- chat_request ------------------------------------------------------------------


def test_like_and_unlike_are_built_for_the_chat_user_through_decode():
    like = req("!like")
    assert isinstance(like, LikeRequested)
    assert (like.namespace, like.user, like.username, like.video_id) == (NS, "alice", "Alice", None)
    assert (like.reply.subject, like.reply.command, like.reply.chat_user) == (None, "like", "Alice")
    unlike = req("!UNLIKE  please")  # a command word in any case; words after it are ignored
    assert isinstance(unlike, UnlikeRequested)
    assert (unlike.namespace, unlike.user, unlike.username, unlike.video_id) == (NS, "alice", "Alice", None)
    assert (unlike.reply.subject, unlike.reply.command, unlike.reply.chat_user) == (None, "unlike", "Alice")


def test_mylikes_asks_for_the_users_latest_three():
    r = req("!mylikes", user="ÅSA")
    assert isinstance(r, UserLikesAsked)
    assert (r.namespace, r.user, r.username, r.limit, r.cursor) == (NS, "åsa", "ÅSA", 3, None)
    assert (r.reply.subject, r.reply.command, r.reply.chat_user) == (None, "user_likes", "ÅSA")


@pytest.mark.parametrize(("message", "window"), [
    ("!top", "all"), ("!top all", "all"), ("!top day", "day"), ("!top week", "week"), ("!top month", "month"),
    ("!TOP Week", "week"), ("  !top   month  ", "month"), ("!top year", "all"), ("!top 7", "all"),
    ("!top week please", "week"),
])
def test_top_takes_a_window_word_and_any_other_word_is_all_time(message, window):
    r = req(message)
    assert isinstance(r, TopAsked)
    assert (r.namespace, r.ranking, r.limit, r.window) == (NS, "liked", 3, window)
    assert (r.reply.subject, r.reply.command, r.reply.chat_user) == (None, "top_liked", "Alice")


@pytest.mark.parametrize("message", ["!like", "!unlike", "!mylikes", "!top", "!top week"])
def test_shadow_muted_users_and_the_bots_own_lines_are_ignored(message):
    assert req(message) is not None
    assert req(message, shadow=True) is None
    assert req(message, user="KrytenBot") is None
    assert req(message, user="kRYTENbOT") is None
    assert req(message, user="") is None


@pytest.mark.parametrize("message", ["", "   ", "like", "hello !like", "!likes", "!unlike2", "!my", "!toplist"])
def test_other_lines_are_not_ours(message):
    assert req(message) is None


@pytest.mark.parametrize("message", ["!like", "!unlike", "!mylikes"])
def test_a_name_the_contract_refuses_gets_no_request(message):
    assert req(message, user="x" * 500) is None  # the gateway's username rule
    assert req(message, user="bad\x07name") is None


def test_the_command_words_come_from_the_config():
    cfg = ChatSection(like_command="!fav", unlike_command="!unfav", mylikes_command="!mine", top_command="!best")
    assert isinstance(req("!FAV", cfg=cfg), LikeRequested)
    assert isinstance(req("!unfav", cfg=cfg), UnlikeRequested)
    assert isinstance(req("!mine", cfg=cfg), UserLikesAsked)
    assert req("!best day", cfg=cfg).window == "day"
    for old in ("!like", "!unlike", "!mylikes", "!top"):
        assert req(old, cfg=cfg) is None


def test_chat_config_defaults_and_words_that_collide():
    chat = parse_config({}).chat
    assert (chat.like_command, chat.unlike_command, chat.mylikes_command, chat.top_command) == (
        "!like", "!unlike", "!mylikes", "!top")
    for key, word in (("unlike_command", "!LIKE"), ("mylikes_command", "!unlike"), ("top_command", "!MyLikes")):
        with pytest.raises(ConfigError) as caught:
            parse_config({"chat": {key: word}})
        assert caught.value.problems == (f"chat.{key}: must differ from the other chat commands",)
    with pytest.raises(ConfigError, match="chat.unlike_command: must be one word"):
        parse_config({"chat": {"unlike_command": "un like"}})


# --- ChatVoice: the lines ---------------------------------------------------------------


def to(command: str, user: str | None = "alice") -> ReplyTo:
    return ReplyTo(None, None, command, 0.0, chat_user=user)


def ok(**fields) -> dict:
    return {"correlation_id": None, "status": "ok", "error": None, **fields}


def error(word: str, **fields) -> dict:
    return {"correlation_id": None, "status": "error", "error": word, **fields}


def say(command: str, body: dict, user: str | None = "alice") -> str | None:
    """What a fresh voice says (no limit has been reached)."""
    return ChatVoice(CFG).line_for(to(command, user), body, 1000.0)


def test_like_and_unlike_lines():
    assert say("like", ok(video_id="abc", like_count=1)) == "alice liked abc (1 like)"
    assert say("like", ok(video_id="abc", like_count=2)) == "alice liked abc (2 likes)"
    assert say("unlike", ok(video_id="abc", like_count=4)) == "alice took back their like of abc (4 likes)"
    assert say("unlike", ok(video_id="abc", like_count=1)) == "alice took back their like of abc (1 like)"
    assert say("unlike", ok(video_id="abc", like_count=0)) == "alice took back their like of abc (0 likes)"
    for command in ("like", "unlike"):
        assert say(command, error("no_current_item")) == "alice: nothing is playing right now"
    assert say("unlike", error("not_liked")) == "alice: nothing to take back"
    assert say("unlike", error("unlike_window_passed")) == "alice: too late to take that like back"


@pytest.mark.parametrize(("command", "body"), [
    ("like", {"status": "duplicate", "error": None, "video_id": "abc", "like_count": 3}),
    ("like", error("rate_limited", retry_after_seconds=5)),
    ("unlike", error("rate_limited", retry_after_seconds=5)),
    ("like", error("invalid_request", detail="username: …")),
    ("unlike", error("unavailable")),
    ("unlike", error("internal_error")),
    ("user_likes", error("unavailable")),
    ("top_liked", error("internal_error")),
    ("now_playing", ok(video_id="abc")),
])
def test_the_bot_stays_silent_where_an_answer_would_be_the_flood(command, body):
    assert say(command, body) is None


def test_no_chat_user_no_line():
    assert say("like", ok(video_id="abc", like_count=1), user=None) is None


def test_mylikes_lines_name_titles_or_the_video_id():
    items = [{"video_id": "v3", "title": "Third", "liked_at": "…"}, {"video_id": "v2", "title": None},
             {"video_id": "v1", "title": ""}]
    assert say("user_likes", ok(username="alice", likes_given=7, items=items, cursor="c")) == (
        "alice: 7 likes given; latest: Third, v2, v1")
    assert say("user_likes", ok(username="alice", likes_given=1, items=items[:1], cursor=None)) == (
        "alice: 1 like given; latest: Third")
    assert say("user_likes", ok(username="alice", likes_given=0, items=[], cursor=None)) == "alice: 0 likes given"


def test_top_lines_name_the_window_when_it_is_not_all():
    items = [{"video_id": "a", "title": "Song A", "count": 5}, {"video_id": "b", "title": None, "count": 2},
             {"video_id": "c", "title": "Song C", "count": 1}]
    assert say("top_liked", ok(window="all", items=items)) == "Top liked: 1. Song A (5) · 2. b (2) · 3. Song C (1)"
    assert say("top_liked", ok(items=items[:1])) == "Top liked: 1. Song A (5)"  # no window echoed: all time
    assert say("top_liked", ok(window="day", items=items[:1])) == "Top liked today: 1. Song A (5)"
    assert say("top_liked", ok(window="week", items=items[:1])) == "Top liked this week: 1. Song A (5)"
    assert say("top_liked", ok(window="month", items=items[:1])) == "Top liked this month: 1. Song A (5)"
    assert say("top_liked", ok(window="all", items=[])) == "No likes yet."
    assert say("top_liked", ok(window="week", items=[])) == "No likes this week."
    assert say("top_liked", ok(window="day", items=[])) == "No likes today."


def test_titles_are_cut_and_lines_stay_bounded():
    long = "A very long title " * 20
    assert len(cut(long)) == PART_MAX and cut(long).endswith("…")
    assert cut("two\nlines\tand  gaps ") == "two lines and gaps"
    assert cut("x" * PART_MAX) == "x" * PART_MAX
    items = [{"video_id": f"v{i}", "title": long, "count": 10**9} for i in range(10)]
    line = say("top_liked", ok(window="month", items=items))
    assert line.count("…") == 3 and len(line) <= LINE_MAX  # three items, each title cut
    line = say("user_likes", ok(likes_given=10, items=[{"video_id": "v", "title": long}] * 10))
    assert line.count("…") == 3 and len(line) <= LINE_MAX
    line = say("unlike", ok(video_id="u" * 500, like_count=1), user="n" * 100)
    assert len(line) <= LINE_MAX and "u" * PART_MAX not in line
    assert "\n" not in say("like", ok(video_id="a\nb", like_count=1))


# --- ChatVoice: the limits ------------------------------------------------------------


LIKED = ok(video_id="abc", like_count=1)


def test_one_line_per_user_per_reply_window():
    voice = ChatVoice(ChatSection(reply_window_seconds=300, max_replies_per_minute=100))
    assert voice.line_for(to("like", "Alice"), LIKED, 0.0) is not None
    assert voice.line_for(to("unlike", "alice"), ok(video_id="abc", like_count=0), 10.0) is None  # case aside
    assert voice.line_for(to("user_likes", "ALICE"), ok(likes_given=0, items=[]), 299.9) is None
    assert voice.line_for(to("top_liked", "bob"), ok(window="week", items=[]), 299.9) == "No likes this week."
    assert voice.line_for(to("unlike", "alice"), error("not_liked"), 300.0) == "alice: nothing to take back"


def test_silence_does_not_use_up_the_users_window():
    voice = ChatVoice(ChatSection(reply_window_seconds=300, max_replies_per_minute=1))
    assert voice.line_for(to("unlike"), error("rate_limited"), 0.0) is None
    assert voice.line_for(to("like"), {"status": "duplicate", "error": None}, 1.0) is None
    assert voice.line_for(to("unlike"), ok(video_id="abc", like_count=0), 2.0) is not None


def test_at_most_max_replies_per_minute_in_all():
    voice = ChatVoice(ChatSection(reply_window_seconds=1, max_replies_per_minute=2))
    top = ok(window="day", items=[])
    assert voice.line_for(to("top_liked", "a"), top, 0.0) is not None
    assert voice.line_for(to("user_likes", "b"), ok(likes_given=0, items=[]), 30.0) is not None
    assert voice.line_for(to("unlike", "c"), error("not_liked"), 59.9) is None  # third within a minute
    assert voice.line_for(to("top_liked", "a"), top, 59.9) is None  # the user's own window passed; the minute did not
    assert voice.line_for(to("unlike", "c"), error("not_liked"), 60.0) is not None  # the first has aged out
    assert voice.line_for(to("top_liked", "d"), top, 60.0) is None  # 30 s and 60 s are within a minute
    assert voice.line_for(to("top_liked", "d"), top, 90.0) is not None


def test_zero_replies_per_minute_means_never():
    voice = ChatVoice(ChatSection(max_replies_per_minute=0))
    assert voice.line_for(to("top_liked"), ok(window="all", items=[]), 0.0) is None


# --- through a daemon ---------------------------------------------------------------------


_n = itertools.count(1)


def chat_config():
    """Chat comes through kryten-py, which reads the fixed ``kryten.events``
    prefix, so these daemons use prefix ``kryten`` with a channel of their own."""
    n = next(_n)
    return parse_config(merged(unique_sections(), {
        "nats": {"subject_prefix": "kryten"}, "cytube": {"channel": f"chatcmd{n}"},
        "analytics": {"namespace": f"chatcmd{n}"}, "chat": {"bot_username": "KrytenBot"}}))


def chat(h, username: str, msg: str) -> None:
    """A chatMsg RawEvent as the bridge publishes it (plain NATS: no stream keeps chat)."""
    channel = h.config.cytube.channel
    data = event_bytes("chatMsg", {"username": username, "msg": msg, "meta": {"shadow": False}, "time": 0},
                       channel, correlation_id="c")
    h.portal.call(lambda: h.nc.publish(event_subject(channel, "chatMsg"), data))


def bot_lines(h) -> list[str]:
    return [c["args"]["message"] for c in h.bot_commands if c.get("command") == "say"
            and c.get("meta", {}).get("channel") == h.config.cytube.channel]


def watch_bot(h) -> None:
    h.bot_commands = []

    async def cb(msg):
        h.bot_commands.append(json.loads(msg.data))

    h.portal.call(lambda: h.nc.subscribe("kryten.robot.command", cb=cb))
    h.portal.call(h.nc.flush)


def said_next(h, n: int) -> str:
    """The bot's ``n``-th line (1-based), once said."""
    wait_until(lambda: len(bot_lines(h)) >= n)
    return bot_lines(h)[n - 1]


def test_unlike_mylikes_and_top_from_the_chat(harness):
    h = harness(chat_config())
    watch_bot(h)
    chat(h, "erin", "!unlike")
    assert said_next(h, 1) == "erin: nothing is playing right now"
    h.change_media("c1", title="Chat song")
    playing(h, "c1")
    assert h.request("like", {"username": "alice"})["like_count"] == 1
    assert h.request("like", {"username": "bob"})["like_count"] == 2
    chat(h, "Alice", "!unlike")
    assert said_next(h, 2) == "Alice took back their like of c1 (1 like)"
    assert h.request("stats", {"video_id": "c1"})["item"]["like_count"] == 1
    assert h.request("user_likes", {"username": "alice"})["likes_given"] == 0
    chat(h, "bob", "!mylikes")
    assert said_next(h, 3) == "bob: 1 like given; latest: Chat song"
    chat(h, "carol", "!top week")
    assert said_next(h, 4) == "Top liked this week: 1. Chat song (1)"
    chat(h, "dave", "!unlike")
    assert said_next(h, 5) == "dave: nothing to take back"
    chat(h, "Alice", "!mylikes")  # Alice got a line within the window: the bot stays quiet
    chat(h, "frank", "!top nonsense")
    assert said_next(h, 6) == "Top liked: 1. Chat song (1)"
    assert len(bot_lines(h)) == 6
