"""The stand-in does what CloudFront does around the edge function.

The function under test is the real one from ``make_edge_handler``; to break a rule, a test
wraps it and alters its result as a faulty function would, then checks the viewer gets the
502 CloudFront answers and the log names the rule. Each rule's AWS page is in
docs/CLOUDFRONT.md and in ``backorigin.local.cloudfront``.
"""

from __future__ import annotations

import hashlib
import logging
import threading
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import urllib3

from backorigin.config import load_config
from backorigin.local import LocalCloudFront
from backorigin.local.cloudfront import via_value
from backorigin.testing.http_origin import HttpOriginServer
from backorigin.types import PROVENANCE_HEADERS

pytestmark = pytest.mark.usefixtures("s3_env")

Handler = Callable[[dict[str, Any], Any], dict[str, Any]]
Serve = Callable[..., LocalCloudFront]


@pytest.fixture(scope="module")
def origin() -> Iterator[HttpOriginServer]:
    with HttpOriginServer() as server:
        yield server


@pytest.fixture
def serve(bucket: str, seaweedfs: Any, s3_client: Any, origin: HttpOriginServer) -> Iterator[Serve]:
    config = load_config(
        f"bucket: {{name: {bucket}, endpoint_url: '{seaweedfs.url}', region: us-east-1}}\n"
        "origins:\n"
        f"  - {{name: web, type: http, base_url: '{origin.url}site/'}}\n"
    )
    started: list[LocalCloudFront] = []

    def make(**options: Any) -> LocalCloudFront:
        server = LocalCloudFront(config, s3_client=s3_client, port=0, workers=1, **options)
        started.append(server.start())
        return server

    yield make
    for server in started:
        server.stop()


def get(server: LocalCloudFront, path: str, method: str = "GET", **headers: str) -> Any:
    return urllib3.request(method, server.url + path, headers=headers, retries=False, timeout=30)


def payload(seed: str, size: int = 5000) -> bytes:
    return hashlib.shake_256(seed.encode()).digest(size)


class Recorder:
    """Wraps the edge handler: keeps each event as given and each result as returned."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, str, dict[str, Any]]] = []
        self.lock = threading.Lock()

    def __call__(self, edge: Handler) -> Handler:
        def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
            cf = event["Records"][0]["cf"]
            kind, target = cf["config"]["eventType"], next(iter(cf["request"]["origin"]))
            seen = {"request_headers": dict(cf["request"]["headers"]), "config": cf["config"]}
            with self.lock:
                self.calls.append((kind, target, seen))
            return edge(event, context)

        return handler

    def sequence(self) -> list[tuple[str, str]]:
        return [(kind, target) for kind, target, _ in self.calls]


def misbehave(
    kind: str, target: str, change: Callable[[dict[str, Any]], None]
) -> Callable[[Handler], Handler]:
    """The real handler, with ``change`` applied to its result for one trigger and origin."""

    def wrap(edge: Handler) -> Handler:
        def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
            cf = event["Records"][0]["cf"]
            result = edge(event, context)
            if cf["config"]["eventType"] == kind and target in cf["request"]["origin"]:
                change(result)
            return result

        return handler

    return wrap


def header(name: str, value: str) -> Callable[[dict[str, Any]], None]:
    def change(result: dict[str, Any]) -> None:
        result.setdefault("headers", {})[name.lower()] = [{"key": name, "value": value}]

    return change


def drop(name: str) -> Callable[[dict[str, Any]], None]:
    def change(result: dict[str, Any]) -> None:
        del result["headers"][name]

    return change


def custom(**fields: Any) -> Callable[[dict[str, Any]], None]:
    def change(result: dict[str, Any]) -> None:
        result["origin"]["custom"].update(fields)

    return change


def generate(**fields: Any) -> Callable[[dict[str, Any]], None]:
    def change(result: dict[str, Any]) -> None:
        result.clear()
        result.update({"status": "200", "statusDescription": "OK", "headers": {}, **fields})

    return change


def replace_body(**fields: Any) -> Callable[[dict[str, Any]], None]:
    def change(result: dict[str, Any]) -> None:
        result.update(fields)

    return change


# --- what reaches the origin --------------------------------------------------------------


def test_the_origin_receives_the_headers_cloudfront_adds(
    serve: Serve, origin: HttpOriginServer
) -> None:
    recorder = Recorder()
    server = serve(wrap_edge=recorder)
    origin.put("site/added.txt", payload("added"))
    response = get(
        server, "/added.txt", **{"User-Agent": "curl/8.5", "X-Forwarded-For": "192.0.2.4"}
    )
    assert response.status == 200
    assert server.queue.join(timeout=60)
    # The edge's request came first; the fetcher's copy reads follow and are not CloudFront's.
    sent, *copies = origin.requests("site/added.txt")
    assert copies
    assert all("x-amz-cf-id" not in later.headers for later in copies)
    request_id = next(seen["config"]["requestId"] for _, t, seen in recorder.calls if t == "custom")
    assert sent.headers["x-amz-cf-id"] == request_id
    assert len(request_id) == 56
    assert sent.headers["via"] == via_value()
    assert sent.headers["user-agent"] == "Amazon CloudFront"
    assert sent.headers["x-forwarded-for"] == "192.0.2.4,127.0.0.1"
    # The function saw CloudFront's headers except the id, which is added after it ran.
    seen = next(
        seen for kind, t, seen in recorder.calls if (kind, t) == ("origin-request", "custom")
    )
    assert "x-amz-cf-id" not in seen["request_headers"]
    assert seen["request_headers"]["user-agent"][0]["value"] == "Amazon CloudFront"
    assert seen["request_headers"]["via"][0]["value"] == via_value()
    # One request id for the viewer request, across both origin attempts.
    assert {seen["config"]["requestId"] for _, _, seen in recorder.calls} == {request_id}


def test_triggers_run_once_per_origin_attempt(serve: Serve, origin: HttpOriginServer) -> None:
    recorder = Recorder()
    server = serve(wrap_edge=recorder)
    origin.put("site/attempts.txt", payload("attempts"))
    assert get(server, "/attempts.txt").status == 200
    # The primary's failover status goes to no origin-response; the secondary gets both.
    assert recorder.sequence() == [
        ("origin-request", "s3"),
        ("origin-request", "custom"),
        ("origin-response", "custom"),
    ]
    assert server.queue.join(timeout=60)
    recorder.calls.clear()
    hit = get(server, "/attempts.txt")
    assert (hit.status, hit.data) == (200, payload("attempts"))
    assert recorder.sequence() == [("origin-request", "s3"), ("origin-response", "s3")]


# --- the default root object --------------------------------------------------------------


def test_root_serves_the_default_root_object(serve: Serve, origin: HttpOriginServer) -> None:
    server = serve()
    origin.put("site/index.html", b"<h1>home</h1>", headers={"Content-Type": "text/html"})
    first = get(server, "/")
    assert (first.status, first.data) == (200, b"<h1>home</h1>")
    assert first.headers["x-backorigin"] == "origin"
    assert server.queue.join(timeout=60)
    second = get(server, "/")
    assert (second.status, second.data) == (200, b"<h1>home</h1>")
    assert "x-backorigin" not in second.headers
    assert get(server, "/", method="HEAD").status == 200


def test_the_default_root_object_is_an_option(serve: Serve, origin: HttpOriginServer) -> None:
    server = serve(default_root_object="home.html")
    origin.put("site/home.html", b"home")
    response = get(server, "/?lang=en")
    assert (response.status, response.data) == (200, b"home")
    with pytest.raises(ValueError, match="default_root_object"):
        serve(default_root_object="/")


# --- results CloudFront refuses -----------------------------------------------------------

REQUEST_RULES = {
    "read-only header changed": (
        "s3",
        header("Via", "1.1 elsewhere"),
        "[read-only-header] the origin-request result changes read-only via",
    ),
    "read-only header added": (
        "custom",
        header("If-Range", '"abc"'),
        "[read-only-header] the origin-request result adds read-only if-range",
    ),
    "read-only header removed": (
        "custom",
        drop("via"),
        "[read-only-header] the origin-request result removes read-only via",
    ),
    "X-Amz-Cf-* added": (
        "custom",
        header("X-Amz-Cf-Id", "forged"),
        "[disallowed-header] the origin-request result adds x-amz-cf-id",
    ),
    "X-Edge-* added": (
        "custom",
        header("X-Edge-Location", "x"),
        "[disallowed-header] the origin-request result adds x-edge-location",
    ),
    "X-Forwarded-Proto added": (
        "custom",
        header("X-Forwarded-Proto", "https"),
        "[disallowed-header] the origin-request result adds x-forwarded-proto",
    ),
    "Proxy-Authorization added": (
        "custom",
        header("Proxy-Authorization", "Basic eA=="),
        "[disallowed-header] the origin-request result adds proxy-authorization",
    ),
    "Upgrade added": (
        "custom",
        header("Upgrade", "h2c"),
        "[disallowed-header] the origin-request result adds upgrade",
    ),
    "IP-literal origin": (
        "custom",
        custom(domainName="192.0.2.10"),
        "[origin-domain] custom origin domainName '192.0.2.10' is an IP address",
    ),
    "IPv6-literal origin": (
        "custom",
        custom(domainName="2001:db8::1"),
        "[origin-domain] custom origin domainName '2001:db8::1'",
    ),
    "port 81": (
        "custom",
        custom(port=81),
        "[origin-port] custom origin port 81 is not 80, 443 or 1024-65535",
    ),
    "port 1023": ("custom", custom(port=1023), "[origin-port] custom origin port 1023"),
    "protocol": ("custom", custom(protocol="ftp"), "[origin-protocol]"),
    "read timeout": ("custom", custom(readTimeout=61), "[origin-timeout]"),
    "custom header X-Amz-*": (
        "custom",
        custom(customHeaders={"x-amz-foo": [{"key": "X-Amz-Foo", "value": "1"}]}),
        "[custom-header] origin custom header x-amz-foo",
    ),
    "uri without /": ("custom", replace_body(uri="a.txt"), "[uri] uri 'a.txt'"),
    "query with a space": (
        "custom",
        replace_body(querystring="a=b c"),
        "[querystring]",
    ),
    "generated response over 1 MB with its headers": (
        "custom",
        generate(
            body="x" * (1024 * 1024 - 8),
            headers={"content-type": [{"key": "Content-Type", "value": "text/plain"}]},
        ),
        "[generated-size] the origin-request result generates 1048590 bytes",
    ),
    "generated status 600": ("custom", generate(status="600"), "[status]"),
    "generated disallowed header": (
        "s3",
        generate(headers={"x-cache": [{"key": "X-Cache", "value": "Hit"}]}),
        "[disallowed-header] the origin-request result adds x-cache",
    ),
    "generated bad base64": (
        "custom",
        generate(body="%%%", bodyEncoding="base64"),
        "[body-encoding]",
    ),
}


@pytest.mark.parametrize("rule", sorted(REQUEST_RULES))
def test_an_origin_request_result_cloudfront_refuses_is_a_502(
    rule: str, serve: Serve, origin: HttpOriginServer, caplog: pytest.LogCaptureFixture
) -> None:
    target, change, logged = REQUEST_RULES[rule]
    server = serve(wrap_edge=misbehave("origin-request", target, change))
    key = "site/request-" + hashlib.md5(rule.encode()).hexdigest() + ".txt"
    origin.put(key, payload(rule))
    origin.reset_counters()
    with caplog.at_level(logging.WARNING, logger="backorigin.local"):
        response = get(server, "/" + key.removeprefix("site/"))
    assert response.status == 502
    assert b"failed validation" in response.data
    assert origin.total_requests() == 0
    assert any(logged in record.getMessage() for record in caplog.records), [
        r.getMessage() for r in caplog.records
    ]


RESPONSE_RULES = {
    "read-only Via added": (
        "custom",
        header("Via", "1.1 elsewhere"),
        "[read-only-header] the origin-response result adds read-only via",
    ),
    "read-only Transfer-Encoding added": (
        "s3",
        header("Transfer-Encoding", "chunked"),
        "[read-only-header] the origin-response result adds read-only transfer-encoding",
    ),
    "X-Amz-Cf-* added": (
        "custom",
        header("X-Amz-Cf-Pop", "LOCAL"),
        "[disallowed-header] the origin-response result adds x-amz-cf-pop",
    ),
    "Connection added": (
        "custom",
        header("Connection", "close"),
        "[disallowed-header] the origin-response result adds connection",
    ),
    "status 199": ("custom", replace_body(status="199"), "[status]"),
    "body over 1 MB": (
        "custom",
        replace_body(body="x" * (1024 * 1024 + 1)),
        "[generated-size] the origin-response result generates",
    ),
}


@pytest.mark.parametrize("rule", sorted(RESPONSE_RULES))
def test_an_origin_response_result_cloudfront_refuses_is_a_502(
    rule: str, serve: Serve, origin: HttpOriginServer, caplog: pytest.LogCaptureFixture
) -> None:
    target, change, logged = RESPONSE_RULES[rule]
    server = serve(wrap_edge=misbehave("origin-response", target, change))
    key = "response-" + hashlib.md5(rule.encode()).hexdigest() + ".txt"
    origin.put("site/" + key, payload(rule))
    if target == "s3":  # a hit: let the first request's copy land, with a faithful function
        plain = serve()
        assert get(plain, "/" + key).status == 200
        assert plain.queue.join(timeout=60)
    with caplog.at_level(logging.WARNING, logger="backorigin.local"):
        response = get(server, "/" + key)
    assert response.status == 502
    assert any(logged in record.getMessage() for record in caplog.records), [
        r.getMessage() for r in caplog.records
    ]


def test_a_function_error_is_a_503(serve: Serve, origin: HttpOriginServer) -> None:
    def fail(result: dict[str, Any]) -> None:
        raise RuntimeError("function bug")

    server = serve(wrap_edge=misbehave("origin-request", "custom", fail))
    origin.put("site/raises.txt", b"x")
    response = get(server, "/raises.txt")
    assert (response.status, response.data) == (
        503,
        b"503 Service Unavailable: the Lambda function returned an error\n",
    )


def test_a_generated_response_within_the_rules_reaches_the_viewer(serve: Serve) -> None:
    server = serve(
        wrap_edge=misbehave(
            "origin-request",
            "custom",
            generate(
                status="418",
                body="dGVh",
                bodyEncoding="base64",
                # without "key", which Lambda@Edge fills in
                headers={"content-type": [{"value": "text/plain"}]},
            ),
        )
    )
    response = get(server, "/teapot.txt")
    assert (response.status, response.data) == (418, b"tea")
    assert response.headers["content-type"] == "text/plain"


# --- origins on this machine --------------------------------------------------------------


def test_loopback_origins_are_served_with_a_warning_unless_strict(
    serve: Serve, origin: HttpOriginServer, caplog: pytest.LogCaptureFixture
) -> None:
    origin.put("site/local.txt", b"local")
    origin.put("site/strict.txt", b"strict")
    with caplog.at_level(logging.WARNING, logger="backorigin.local"):
        lenient = serve()
        assert get(lenient, "/local.txt").data == b"local"
        assert get(lenient, "/local.txt?again=1").status == 200
        strict = serve(strict_origins=True)
        refused = get(strict, "/strict.txt")
    warnings = [
        r.getMessage() for r in caplog.records if "CloudFront refuses IP-literal" in r.getMessage()
    ]
    assert len(warnings) == 1
    assert refused.status == 502
    assert any(
        "[origin-domain] custom origin domainName '127.0.0.1' is an IP address" in r.getMessage()
        for r in caplog.records
    )


# --- provenance metadata ------------------------------------------------------------------


@pytest.mark.parametrize("keep", [False, True])
def test_viewers_do_not_see_provenance_metadata_unless_kept(
    keep: bool, serve: Serve, origin: HttpOriginServer, s3_client: Any, bucket: str
) -> None:
    server = serve(expose_provenance=keep)
    origin.put("site/provenance.txt", payload("provenance"))
    assert get(server, "/provenance.txt").status == 200
    assert server.queue.join(timeout=60)
    stored = s3_client.head_object(Bucket=bucket, Key="provenance.txt")["Metadata"]
    assert stored["backorigin-origin"] == "web"  # the copy keeps it ...
    for method in ("GET", "HEAD"):
        hit = get(server, "/provenance.txt", method=method)
        assert hit.status == 200
        shown = {name.lower() for name in hit.headers if name.lower().startswith("x-amz-meta-")}
        expected = {f"x-amz-meta-{name}" for name in stored}
        if not keep:
            expected -= set(PROVENANCE_HEADERS)
        assert shown == expected  # ... and viewers see it only when asked


def test_a_hit_the_function_turns_into_a_304_has_no_body(
    serve: Serve, origin: HttpOriginServer
) -> None:
    origin.put("site/revalidated.txt", payload("revalidated"))
    plain = serve()
    assert get(plain, "/revalidated.txt").status == 200
    assert plain.queue.join(timeout=60)
    server = serve(
        wrap_edge=misbehave(
            "origin-response", "s3", replace_body(status="304", statusDescription="Not Modified")
        )
    )
    response = get(server, "/revalidated.txt")
    assert (response.status, response.data) == (304, b"")
    assert get(plain, "/revalidated.txt").data == payload("revalidated")  # the bucket has it
