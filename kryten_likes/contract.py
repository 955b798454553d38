"""The wire contract's rules (docs/contract.md), in one place.

Every module that checks a namespace, a correlation_id, an id, a username,
a ``limit`` or a body size imports the rule from here, so a change to the
contract is a change to this file. Pure: no I/O, no nats, nothing from the
rest of the package (``store.keys`` imports the namespace rule from here).
"""

from __future__ import annotations

import re
import unicodedata

__all__ = [
    "ID_MAX_LEN", "MAX_BODY", "MAX_CORRELATION_ID", "MEDIA_TYPE_MAX_LEN", "NAMESPACE_PATTERN", "TITLE_MAX_LEN",
    "TOP_LIMIT_DEFAULT", "TOP_LIMIT_MAX", "USERNAME_MAX_LEN", "fold_user", "good_correlation_id", "has_control",
    "has_surrogate",
]

# A namespace (``ns/{namespace}/...`` in KV): in requests, in config, in keys.
NAMESPACE_PATTERN = re.compile(r"^[A-Za-z0-9_-]{1,64}$")

# A request body larger than this is refused (``invalid_request``, field ``body``).
MAX_BODY = 64 * 1024

# ``correlation_id``: a string of at most this many characters.
MAX_CORRELATION_ID = 200

# ``video_id`` and ``playlist_id`` (in requests and in the bridge's events):
# 1 to ID_MAX_LEN characters, no control characters, and short enough to key.
ID_MAX_LEN = 1000
# Free text carried with an item: its title and its media type.
TITLE_MAX_LEN = 1000
MEDIA_TYPE_MAX_LEN = 100

# ``username``, once folded (``fold_user``): 1 to USERNAME_MAX_LEN characters,
# no control characters.
USERNAME_MAX_LEN = 64

# ``limit`` of top_liked / top_played: 1 to TOP_LIMIT_MAX, TOP_LIMIT_DEFAULT if absent.
TOP_LIMIT_MAX = 100
TOP_LIMIT_DEFAULT = 10

# ``window`` of the top lists (docs/contract-social-web.md): rolling, ending now.
WINDOWS = ("all", "day", "week", "month")

_BAD_CATEGORIES = {"Cc", "Cf", "Cs", "Co", "Cn"}


def good_correlation_id(cid: object) -> bool:
    """The contract's rule: a string of at most 200 characters (and one that
    JSON can carry back: no lone surrogate)."""
    return isinstance(cid, str) and len(cid) <= MAX_CORRELATION_ID and not has_surrogate(cid)


def fold_user(name: str) -> str:
    """One CyTube user, whatever the case or Unicode form: NFKC, then casefold."""
    if name.isascii():  # NFKC leaves ASCII alone, and casefold is lower() there
        return name.lower()
    return unicodedata.normalize("NFKC", name).casefold()


def has_surrogate(text: str) -> bool:
    return not text.isascii() and any("\ud800" <= ch <= "\udfff" for ch in text)


def has_control(text: str) -> bool:
    """Control, format, surrogate, private-use or unassigned characters: none
    of them may be in an id, a username or other text of a request."""
    if text.isascii():  # the only bad ASCII characters are controls (Cc)
        return not text.isprintable()
    return any(unicodedata.category(ch) in _BAD_CATEGORIES for ch in text)
