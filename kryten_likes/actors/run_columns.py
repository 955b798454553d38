"""Flat columns of sorted runs, built once: how the like index lays out the
records read at start (``like_index.LikeIndex.freeze``).

Both are counting sorts over ``array``s (no Python object per entry):
``grouped_by`` groups keys by an id, stably, and says where each id's group
starts; ``sorted_runs`` turns staged records into one flat column of
``liked_at << 32 | other id`` entries, each id's run sorted.
"""

from __future__ import annotations

from array import array


def grouped_by(keys: array, ids: array, n: int) -> tuple[array, array]:
    """``keys`` grouped by ``ids[key]`` (a counting sort: stable), and where each id's group starts."""
    starts = array("Q", bytes(8 * (n + 1)))
    for k in keys:
        starts[ids[k] + 1] += 1
    for x in range(n):
        starts[x + 1] += starts[x]
    grouped = array(keys.typecode, bytes(keys.itemsize * len(keys)))
    at = array("Q", starts)
    for k in keys:
        x = ids[k]
        grouped[at[x]] = k
        at[x] += 1
    return grouped, starts


def sorted_runs(keep: array, ids: array, others: array, times: array, n: int) -> tuple[array, array]:
    """The entries ``liked_at << 32 | other id`` of the kept staged records,
    grouped by id, each id's run sorted; and the runs' starts."""
    grouped, starts = grouped_by(keep, ids, n)
    flat = array("Q", (times[k] << 32 | others[k] for k in grouped))
    del grouped
    for x in range(n):
        lo, hi = starts[x], starts[x + 1]
        if hi - lo > 1:
            flat[lo:hi] = array("Q", sorted(flat[lo:hi]))
    return flat, starts
