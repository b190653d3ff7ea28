"""The test origin's gates: held GETs wait for the test, and a client that leaves is noticed."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor

import pytest
import urllib3

from backorigin.testing.http_origin import HttpOriginServer

DATA = bytes(range(256)) * 400  # 102 400 bytes


@pytest.fixture
def origin() -> Iterator[HttpOriginServer]:
    with HttpOriginServer() as server:
        server.put("k.bin", DATA)
        yield server


@pytest.fixture
def pool() -> Iterator[ThreadPoolExecutor]:
    with ThreadPoolExecutor(4) as executor:
        yield executor


def get(
    origin: HttpOriginServer, pool: ThreadPoolExecutor, **kwargs: object
) -> Future[urllib3.BaseHTTPResponse]:
    return pool.submit(
        urllib3.request, "GET", origin.url + "k.bin", retries=False, timeout=60, **kwargs
    )


def test_a_held_get_waits_for_the_release(
    origin: HttpOriginServer, pool: ThreadPoolExecutor
) -> None:
    gate = origin.hold("k.bin")
    response = get(origin, pool)
    assert gate.wait_held(1)
    assert not response.done()
    assert origin.bytes_served("k.bin") == 0
    gate.release()
    assert response.result().data == DATA
    assert (gate.caught, gate.abandoned, gate.waiting) == (1, 0, 0)
    assert origin.bytes_served("k.bin") == len(DATA)
    assert get(origin, pool).result().status == 200  # a released gate holds nothing more


def test_which_picks_the_gets_to_hold(origin: HttpOriginServer, pool: ThreadPoolExecutor) -> None:
    gate = origin.hold(which=lambda n: n == 2)  # any key: the second GET this gate sees
    assert get(origin, pool).result().status == 200
    second = get(origin, pool, headers={"Range": "bytes=10-19"})
    assert gate.wait_held(1)
    assert get(origin, pool).result().status == 200  # the third passes the held second
    gate.release()
    assert (second.result().status, second.result().data) == (206, DATA[10:20])


def test_a_client_that_gives_up_is_noticed_and_sent_nothing(origin: HttpOriginServer) -> None:
    gate = origin.hold("k.bin")
    with pytest.raises(urllib3.exceptions.ReadTimeoutError):
        urllib3.request("GET", origin.url + "k.bin", retries=False, timeout=0.5)
    assert gate.wait_empty()
    assert (gate.caught, gate.abandoned) == (1, 1)
    gate.release()
    assert origin.bytes_served("k.bin") == 0


def test_after_bytes_holds_mid_body(origin: HttpOriginServer, pool: ThreadPoolExecutor) -> None:
    gate = origin.hold("k.bin", after_bytes=1000)
    response = get(origin, pool, preload_content=False)
    assert gate.wait_held(1)
    assert origin.bytes_served("k.bin") == 1000
    gate.release()
    body = response.result()
    assert body.headers["ETag"]
    assert body.read() == DATA
    assert origin.bytes_served("k.bin") == len(DATA)


def test_a_killed_client_is_noticed_mid_body(origin: HttpOriginServer) -> None:
    gate = origin.hold("k.bin", after_bytes=5000)
    reader = f"import urllib.request; urllib.request.urlopen('{origin.url}k.bin').read()"
    child = subprocess.Popen([sys.executable, "-c", reader])
    try:
        assert gate.wait_held(1)
    finally:
        child.kill()
        child.wait()
    assert gate.wait_empty()
    assert gate.abandoned == 1
    gate.release()
    assert origin.bytes_served("k.bin") == 5000


def test_clear_faults_releases_the_gates(
    origin: HttpOriginServer, pool: ThreadPoolExecutor
) -> None:
    gate = origin.hold("k.bin")
    response = get(origin, pool)
    assert gate.wait_held(1)
    origin.clear_faults("k.bin")
    assert response.result().data == DATA
    assert gate.released
