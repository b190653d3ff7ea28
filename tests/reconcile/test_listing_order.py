"""The origins' side of status comes out in code-point order whatever order a store lists in.

S3 general purpose buckets list in UTF-8 binary order (code-point order) and GCS in
lexicographic order of the UTF-8 names, but Azurite sorts as UTF-16 does (U+1F600 before
U+FF5E) and SeaweedFS lists the "directory" a/ before the key a!. Keys that tell those orders
apart: upper before lower case, punctuation around "/", accented letters, and a character
outside the Basic Multilingual Plane next to one near its top.
"""

from __future__ import annotations

import pytest
from reconcile_helpers import Legacy, Setup

from backorigin.prewarm import OrderedWalk

pytestmark = pytest.mark.usefixtures("s3_env")

KEYS = ["B", "a", "a!", "a-b", "a.b", "a/b", "a0", "a~", "aé", "a\u4e2d", "a\uff5e", "a\U0001f600"]


def test_listings_come_in_code_point_order(legacy: Legacy, setup: Setup) -> None:
    for key in KEYS:
        legacy.put(key, b"1")
    walked = [job.key for job in OrderedWalk(setup.config, setup.engine.adapter)]
    assert walked == sorted(KEYS)
