"""What the bucket already holds, for a batch of keys, from one listing instead of a HEAD each.

A prewarm asks S3 about every key before it copies. One HeadObject per key is one S3 request
per object on top of the PutObject; a ListObjectsV2 page answers for up to 1,000 keys. So
prewarm takes its keys in batches, lists the bucket under the batch's common prefix, and
looks each key up in that listing: a key the listing lacks is copied at once (the write is
create-only, so an object that appeared in between is never overwritten: the copy ends
``exists``), a key it has needs no further request unless its provenance must be compared.

The listing is bounded: when it would run past a few pages per thousand keys of the batch
(a sparse batch in a big bucket, where HEADs are cheaper), it stops and the batch falls back
to one HEAD per key. After a few such fallbacks in a row the listing is not tried again.
"""

from __future__ import annotations

__all__ = ["BATCH", "DestinationIndex"]

import logging
from collections.abc import Sequence

from backorigin.transfer.bucket import Bucket, BucketError

log = logging.getLogger("backorigin.prewarm")

BATCH = 10_000
"""Keys looked up per listing."""

_GIVE_UP_AFTER = 3


class DestinationIndex:
    """Lists the bucket for batches of S3 keys and remembers what it found.

    Args:
        bucket: The bucket the copies go to.
        budget_factor: A listing may read up to ``budget_factor x len(batch) + allowance``
            entries before it gives up on the batch.
        allowance: The entries any batch may list (one page).
    """

    def __init__(self, bucket: Bucket, *, budget_factor: int = 4, allowance: int = 1_000) -> None:
        self.bucket = bucket
        self.budget_factor = budget_factor
        self.allowance = allowance
        self.listings = 0
        """Batches answered by a listing."""
        self.fallbacks = 0
        """Batches left to HEADs (the listing was too long or failed)."""
        self._failures = 0

    @property
    def enabled(self) -> bool:
        """Whether listings are still tried."""
        return self._failures < _GIVE_UP_AFTER

    def lookup(self, keys: Sequence[str]) -> dict[str, int | None] | None:
        """``{key: size in the bucket, or None when absent}`` for ``keys``.

        Returns:
            The answer for every key, or None when the batch is left to HEADs.
        """
        if not keys or not self.enabled:
            return None
        wanted = set(keys)
        prefix = _common_prefix(min(wanted), max(wanted))
        budget = self.budget_factor * len(wanted) + self.allowance
        found: dict[str, int | None] = dict.fromkeys(wanted)
        listed = 0
        try:
            for item in self.bucket.list_objects(prefix):
                listed += 1
                if item.key in wanted:
                    found[item.key] = item.size
                if listed > budget:
                    self._failures += 1
                    self.fallbacks += 1
                    log.debug("listing under %r is longer than HEADs would be", prefix)
                    return None
        except BucketError as exc:
            self._failures += 1
            self.fallbacks += 1
            log.warning("could not list the bucket under %r: %s", prefix, exc)
            return None
        self._failures = 0
        self.listings += 1
        return found


def _common_prefix(first: str, last: str) -> str:
    """The characters ``first`` and ``last`` start with (every key between them shares them)."""
    length = 0
    for a, b in zip(first, last, strict=False):
        if a != b:
            break
        length += 1
    return first[:length]
