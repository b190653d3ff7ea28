"""status and reconcile end to end, for GCS, Azure Blob and S3-compatible old stores.

Three objects are copied; then one changes at the origin, one is deleted there and a fourth
appears. The application also writes objects of its own into the bucket: status never calls
them orphaned, and reconcile never overwrites or deletes them.
"""

from __future__ import annotations

from typing import Any

import pytest
from reconcile_helpers import Legacy, Setup

from backorigin.prewarm import Action, ActionResult, State, reconcile, status
from backorigin.transfer import CopyOutcome

pytestmark = pytest.mark.usefixtures("s3_env")

APP_OWN = b"the application's own object"


def body(s3: Any, bucket: str, key: str) -> bytes:
    return bytes(s3.get_object(Bucket=bucket, Key=key)["Body"].read())


def keys_in(s3: Any, bucket: str) -> set[str]:
    listed = s3.list_objects_v2(Bucket=bucket).get("Contents", [])
    return {o["Key"] for o in listed if not o["Key"].startswith(".backorigin/")}


def prepare(legacy: Legacy, setup: Setup, s3: Any, bucket: str) -> None:
    """Copies of a, b, c; then b changes (same size), c is deleted, d is added at the origin."""
    for name in ("a", "b", "c"):
        legacy.put(f"site/{name}.txt", f"{name} version one".encode())
    for name in ("a", "b", "c"):
        assert setup.engine.copy(f"site/{name}.txt").outcome is CopyOutcome.COPIED
    # The application writes into the bucket too: one object of its own, and one over a key
    # the origin also has (the application's version is what viewers get from then on).
    s3.put_object(Bucket=bucket, Key="site/app-only.txt", Body=APP_OWN)
    legacy.put("site/e.txt", b"e at the origin")
    s3.put_object(Bucket=bucket, Key="site/e.txt", Body=APP_OWN)
    legacy.put("site/b.txt", b"b version two")
    legacy.delete("site/c.txt")
    legacy.put("site/d.txt", b"d, new at the origin")


def test_status_then_reconcile_brings_the_bucket_in_step(
    legacy: Legacy, setup: Setup, s3_client: Any, bucket: str
) -> None:
    prepare(legacy, setup, s3_client, bucket)
    adapter = setup.engine.adapter

    report = status(setup.config, adapter=adapter, bucket=setup.engine.bucket)
    assert report.error is None
    assert report.objects[State.STALE] == 1, report.examples
    assert report.objects[State.ORPHANED] == 1, report.examples
    assert report.objects[State.MISSING] == 1
    assert report.objects[State.MIGRATED] == 2  # a, and e (the application's)
    assert report.objects[State.APPLICATION] == 1
    assert [k for k, _ in report.examples[State.STALE]] == ["site/b.txt"]
    assert [k for k, _ in report.examples[State.ORPHANED]] == ["site/c.txt"]
    assert [k for k, _ in report.examples[State.MISSING]] == ["site/d.txt"]
    assert report.bytes[State.MISSING] == len(b"d, new at the origin")
    assert not report.complete
    assert report.share_migrated == pytest.approx(2 / 4)

    kept = reconcile(setup.config, engine=setup.engine, concurrency=4)
    assert kept.ok, kept.examples
    assert kept.planned == {Action.COPY: 1, Action.REFRESH: 1}
    assert kept.count(ActionResult.DONE) == 2
    assert body(s3_client, bucket, "site/b.txt") == b"b version two"
    assert body(s3_client, bucket, "site/d.txt") == b"d, new at the origin"
    assert body(s3_client, bucket, "site/c.txt") == b"c version one"  # deletes: keep

    after = status(setup.config, adapter=adapter, bucket=setup.engine.bucket)
    assert after.complete
    assert after.objects[State.MIGRATED] == 4
    assert after.objects[State.ORPHANED] == 1
    assert after.share_migrated == 1.0

    deleting = reconcile(setup.config, engine=setup.engine, deletes="delete")
    assert deleting.planned == {Action.DELETE: 1}
    assert deleting.count(ActionResult.DONE, Action.DELETE) == 1
    final = status(setup.config, adapter=adapter, bucket=setup.engine.bucket)
    assert final.complete
    assert final.objects[State.ORPHANED] == 0
    assert final.objects[State.APPLICATION] == 1
    # The application's objects were neither overwritten nor deleted.
    assert keys_in(s3_client, bucket) == {
        "site/a.txt",
        "site/b.txt",
        "site/d.txt",
        "site/e.txt",
        "site/app-only.txt",
    }
    assert body(s3_client, bucket, "site/app-only.txt") == APP_OWN
    assert body(s3_client, bucket, "site/e.txt") == APP_OWN
