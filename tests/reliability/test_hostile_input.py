"""Hostile input: URIs, keys, events, redirects, sizes and configs an attacker (or a bug) sends.

* Generated URIs and keys go through the real edge origin-request handler for every origin
  type (each with a prefix, a rewriting route and an auth mode that signs at the edge): no
  exception escapes, a rejected key gets a generated 400 before any adapter exists, and an
  accepted one reaches exactly ``base path + origin prefix + routed key`` — never above it.
* Malformed and truncated CloudFront events either are handled or raise ``MalformedEvent``
  (never anything else); malformed SQS records never sink the rest of their batch.
* Redirects towards other hosts, loopback neighbours or the metadata service are refused, and
  a decoy server on 127.0.0.2 proves no request got there.
* Objects over ``copy.max_object_size`` are refused before a body byte is read.
* Inline secrets in configs are rejected without echoing them.
"""

from __future__ import annotations

import base64
import copy
import hashlib
import json
import re
import threading
import urllib.parse
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import seed as hypothesis_seed
from hypothesis import strategies as st
from reliability_support import SEED, Lab

from backorigin.adapters.http import HttpAdapter
from backorigin.config import Config, SecretResolver, load_config
from backorigin.config.origins import HttpOrigin
from backorigin.errors import ConfigError, InvalidKey
from backorigin.handlers import make_edge_handler, make_fetcher_handler
from backorigin.handlers.edge import KEY_HEADER, EdgeHandler
from backorigin.handlers.events import MalformedEvent
from backorigin.keys import Router, decode_uri, encode_key, is_reserved, validate_key
from backorigin.transfer import CopyEngine, CopyOutcome

EVENTS = Path(__file__).resolve().parent.parent / "events"
EXAMPLES = settings(
    max_examples=150,
    deadline=None,
    derandomize=False,
    database=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)

SECRETS = {
    "HTTP_TOKEN": "hostile-http-token-4f1b9c",
    "GCS_ID": "GOOG1EHOSTILEACCESSID0001",
    "GCS_SECRET": "hostile-gcs-hmac-secret-77aa",
    "AZ_KEY": base64.b64encode(hashlib.sha512(b"hostile azure key").digest()).decode(),
    "S3_ID": "AKIAHOSTILE000000001",
    "S3_SECRET": "hostile-s3-secret-key-0123456789abcdef",
}

ORIGINS = {
    "http": (
        "{name: o, type: http, base_url: 'https://old.example.com/static/base/', "
        "prefix: 'pre fix/', auth: {mode: bearer, token: {secret: {env: HTTP_TOKEN}}}}"
    ),
    "gcs": (
        "{name: o, type: gcs, bucket: old-media, prefix: 'g/', auth: {mode: hmac, "
        "access_id: {secret: {env: GCS_ID}}, secret: {secret: {env: GCS_SECRET}}}}"
    ),
    "azure": (
        "{name: o, type: azure, account_url: 'https://acct.blob.core.windows.net', "
        "container: media, prefix: 'a/', auth: {mode: account_key, "
        "account_key: {secret: {env: AZ_KEY}}}}"
    ),
    "s3": (
        # Only a public bucket can be reached through the edge (S3 refuses signed requests
        # once CloudFront adds X-Amz-Cf-Id); a private one is a fallback, never routed to.
        "{name: o, type: s3, bucket: legacy, region: eu-west-1, prefix: 's3/', auth: "
        "{mode: anonymous}}"
    ),
}
FORWARDED = ("v", "a b")


def edge_config(kind: str) -> Config:
    return load_config(
        "bucket: {name: media-new, region: eu-west-1}\n"
        f"origins:\n  - {ORIGINS[kind]}\n"
        "routes:\n"
        "  - {prefix: 'img/', origin: o, rewrite: {strip_prefix: 'img/', add_prefix: 'images/'}}\n"
        "  - {prefix: '', origin: o}\n"
        "edge: {forward_query: [v, 'a b'], negative_ttl: 20s}\n"
    )


CONFIGS = {kind: edge_config(kind) for kind in ORIGINS}


class NoQueue:
    """The edge's SQS client for origin-request tests: it must never be used there."""

    def send_message(self, **_: Any) -> dict[str, str]:
        raise AssertionError("origin-request must not enqueue")


def new_handler(kind: str) -> EdgeHandler:
    return make_edge_handler(
        CONFIGS[kind],
        queue_url="https://sqs.eu-west-1.amazonaws.com/123456789012/q",
        sqs_client=NoQueue(),
        secrets=SecretResolver(environ=dict(SECRETS)),
    )


HANDLERS = {kind: new_handler(kind) for kind in ORIGINS}


def event(name: str) -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads((EVENTS / f"{name}.json").read_text())
    return loaded


def request_event(uri: str, query: str = "") -> dict[str, Any]:
    evt = event("origin-request-secondary")
    request = evt["Records"][0]["cf"]["request"]
    request["uri"] = uri
    request["querystring"] = query
    return evt


# --- generated URIs and keys through the edge -----------------------------------------------

PIECES = [
    "/", "//", ".", "..", "%2e", "%2E", "%2e%2e", ".%2e", "%2f", "%2F", "%5c", "%5C", "\\",
    "%00", "%0a", "%", "%z", "%zz", "%2", "@", "%40", ":", "?", "#", "%23", "%3F", "%25",
    "%252e", "%252f", "a", "b", "img/", "images", ".backorigin/", "%2ebackorigin/",
    ".backorigin", "~", " ", "%20", "+", "é", "%C3%A9", "%C3", "%FF", "%C0%AE", "\x00",
    "\x7f", "\u202e", "\ud800", "http://evil.example/", "//169.254.169.254/", ";", "..;",
    "%u002e", "\u2025", "\uff0e\uff0e", "&", "=", "*", "$",
]  # fmt: skip
BENIGN = [
    "a", "b", "img/", "x/", "%20", "%C3%A9", "~", "-", "_", "+", "é", "%2B", "%25", "@", ":",
    "=", "&", ";", "$", "*", "'", "(", ")", "!", ",", ".", "..", "...", ".a", "a.", "%2e%2ex",
]  # fmt: skip
URIS = st.one_of(
    st.lists(st.sampled_from(PIECES) | st.text(max_size=4), max_size=14).map(
        lambda parts: "/" + "".join(parts)
    ),
    # Mostly plausible paths with at most one hostile piece, so that many are accepted and
    # the rewritten request itself gets checked.
    st.tuples(
        st.lists(st.sampled_from(BENIGN), min_size=1, max_size=10),
        st.sampled_from(["", *PIECES]),
        st.integers(0, 10),
    ).map(lambda t: "/" + "".join([*t[0][: t[2]], t[1], *t[0][t[2] :]])),
    st.text(max_size=30),  # not even starting with "/"
    st.just("/" + "k" * 1100),
)
QUERIES = st.lists(
    st.tuples(
        st.sampled_from(["v", "a+b", "a%20b", "token", "sig", "comp", "X-Amz-Credential", "sv"]),
        st.text(alphabet="ab%=&+ 2", max_size=6),
    ),
    max_size=4,
).map(lambda pairs: "&".join(f"{k}={v}" for k, v in pairs))
SAS_NAMES = frozenset(
    [
        "sv",
        "ss",
        "srt",
        "sp",
        "se",
        "st",
        "spr",
        "sig",
        "sr",
        "skoid",
        "sktid",
        "skt",
        "ske",
        "sks",
        "skv",
        "sdd",
        "rscc",
        "rscd",
        "rsce",
        "rscl",
        "rsct",
    ]
)
SAFE_URI = re.compile(r"(?:[A-Za-z0-9._~/-]|%[0-9A-F]{2})*")


def routed_key(kind: str, uri: str) -> str | None:
    """The origin-side key the edge must send ``uri`` to, or None if it must refuse it."""
    try:
        return Router(CONFIGS[kind]).route(decode_uri(uri)).primary.key
    except InvalidKey:
        return None


def check_edge(kind: str, uri: str, query: str = "") -> dict[str, Any]:
    """Send one origin-request through the edge and check everything it may and may not do."""
    handler = HANDLERS[kind]
    evt = request_event(uri, query)
    result = handler(copy.deepcopy(evt), None)  # an exception here fails the test
    expected = routed_key(kind, uri)
    if expected is None:
        assert result.get("status") == "400", (uri, result)
        assert "origin" not in result
        fresh = new_handler(kind)
        assert fresh(copy.deepcopy(evt), None).get("status") == "400"
        assert fresh._adapters == {}, f"an adapter was built for the rejected URI {uri!r}"
        return result
    assert "status" not in result, (uri, result)
    adapter = handler.adapter("o")
    spec = adapter.cloudfront_origin()
    custom = result["origin"]["custom"]
    # CloudFront goes to the configured host and base path, whatever the viewer sent...
    assert (custom["domainName"], custom["path"], custom["port"]) == (
        spec.domain,
        spec.path,
        spec.port,
    )
    host = spec.domain if spec.port in (80, 443) else f"{spec.domain}:{spec.port}"
    assert result["headers"]["host"][0]["value"] == host
    # ... and to exactly prefix + routed key below it: one level of percent-decoding (what the
    # origin does) yields no dot segment, no backslash, nothing outside the prefix.
    sent = result["uri"]
    assert SAFE_URI.fullmatch(sent), f"unsafe characters in {sent!r} for {uri!r}"
    decoded = urllib.parse.unquote(sent, errors="strict")
    prefix = CONFIGS[kind].origins[0].prefix
    assert decoded == "/" + prefix + expected, (uri, sent)
    assert not {".", ".."} & set(decoded.split("/")), (uri, sent)
    assert "\\" not in decoded
    # The viewer's cookie never reaches the origin; its Authorization only if we set one.
    headers = result["headers"]
    assert "cookie" not in headers
    auth = headers.get("authorization", [{"value": ""}])[0]["value"]
    assert auth == "" or auth.startswith(("Bearer ", "AWS4-HMAC-SHA256 ", "GOOG4-HMAC-SHA256 "))
    assert headers[KEY_HEADER][0]["value"] == encode_key(decode_uri(uri))[1:]
    # Only the configured query parameters pass (plus a SAS the Azure adapter adds itself, or
    # the signed-URL parameters of GCS HMAC).
    for pair in filter(None, result["querystring"].split("&")):
        name = urllib.parse.unquote_plus(pair.partition("=")[0])
        added = (kind == "azure" and name in SAS_NAMES) or (
            kind == "gcs" and name.startswith("X-Goog-")
        )
        assert name in FORWARDED or added, (query, pair)
    return result


@pytest.mark.parametrize("kind", sorted(ORIGINS))
@hypothesis_seed(SEED)
@EXAMPLES
@given(uri=URIS, query=QUERIES)
def test_generated_uris_through_the_edge(kind: str, uri: str, query: str) -> None:
    check_edge(kind, uri, query)


@pytest.mark.parametrize("kind", sorted(ORIGINS))
@hypothesis_seed(SEED)
@EXAMPLES
@given(key=st.text(max_size=60))
def test_generated_keys_reach_the_origin_as_they_are(kind: str, key: str) -> None:
    try:
        uri = encode_key(key)
    except UnicodeEncodeError:
        return  # lone surrogates cannot be sent in a URI at all
    result = check_edge(kind, uri)
    try:
        acceptable = bool(validate_key(key)) and not is_reserved(key)
    except InvalidKey:
        acceptable = False
    assert ("status" not in result) == (acceptable and routed_key(kind, uri) is not None), key


@pytest.mark.parametrize(
    "uri",
    [
        "/img/..%2f..%2fetc/passwd",
        "/img/%2e%2e/%2e%2e/etc/passwd",
        "/img/.%2E/x",
        "/a/%252e%252e/b",  # a literal "%2e%2e" segment: sent double-encoded, stays literal
        "/%2F%2Fevil.example/x",
        "/http://169.254.169.254/latest/meta-data/",
        "/a@169.254.169.254/x",
        "/a%40evil.example/x",
        "/a%5C..%5Cb",
        "/a\\..\\b",
        "/img/%C0%AE%C0%AE/x",
        "/.backorigin/leases/x.json",
        "/%2Ebackorigin/leases/x.json",
    ],
)
@pytest.mark.parametrize("kind", sorted(ORIGINS))
def test_known_escape_attempts(kind: str, uri: str) -> None:
    check_edge(kind, uri, "v=1&token=leak&comp=list&sig=forged")


# --- malformed and truncated events ----------------------------------------------------------

EVENT_NAMES = [p.stem for p in sorted(EVENTS.glob("origin-*.json"))]
JUNK = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.floats(allow_nan=True),
    st.text(max_size=8),
    st.lists(st.none(), max_size=2),
    st.dictionaries(st.text(max_size=3), st.none(), max_size=2),
)


def paths(node: Any, here: tuple[Any, ...] = ()) -> Iterator[tuple[Any, ...]]:
    yield here
    if isinstance(node, dict):
        for name, child in node.items():
            yield from paths(child, (*here, name))
    elif isinstance(node, list):
        for index, child in enumerate(node):
            yield from paths(child, (*here, index))


@st.composite
def mangled_events(draw: st.DrawFn) -> tuple[str, dict[str, Any], list[str]]:
    name = draw(st.sampled_from(EVENT_NAMES))
    evt = event(name)
    done: list[str] = []
    for _ in range(draw(st.integers(1, 3))):
        where = draw(st.sampled_from(list(paths(evt))))
        if not where:
            evt = draw(JUNK)
            done.append("event := junk")
            break
        parent = evt
        try:
            for step in where[:-1]:
                parent = parent[step]
            if draw(st.booleans()):
                del parent[where[-1]]
                done.append(f"del {where}")
            else:
                parent[where[-1]] = draw(JUNK)
                done.append(f"{where} := junk")
        except (KeyError, IndexError, TypeError):
            continue  # an earlier change removed this path
    return name, evt, done


@hypothesis_seed(SEED)
@settings(EXAMPLES, max_examples=400)
@given(case=mangled_events())
def test_mangled_cloudfront_events(case: tuple[str, dict[str, Any], list[str]]) -> None:
    """Handled, or refused with MalformedEvent; never another exception, never a guess."""
    name, evt, done = case
    for kind in ORIGINS:
        try:
            result = HANDLERS[kind](copy.deepcopy(evt), None)
        except MalformedEvent:
            continue
        assert isinstance(result, dict), (name, done)


REQ = "origin-request-secondary"
RESP = "origin-response-secondary-200"
DELETE = object()
CF = ("Records", 0, "cf")
BAD_KEY = [{"key": "X-Backorigin-Key", "value": "%zz/.."}]
# (event, path to change, new value or DELETE, what the edge must do)
DECISIONS = [
    # Nothing to return without a request: CloudFront sends only well-formed events, so a
    # broken one is a wiring error, and the edge fails loudly (CloudFront answers 5xx) rather
    # than letting the viewer's request go on to the origin unsigned and un-rewritten.
    (REQ, ("Records",), DELETE, "raises"),
    (REQ, ("Records",), [], "raises"),
    (REQ, (*CF, "request"), DELETE, "raises"),
    (REQ, (*CF, "request", "uri"), DELETE, "raises"),
    (REQ, (*CF, "request", "uri"), 42, "raises"),
    (REQ, (*CF, "config", "eventType"), DELETE, "raises"),
    (REQ, (*CF, "config", "eventType"), "viewer-request", "raises"),
    (REQ, (*CF, "request", "origin", "custom"), DELETE, "raises"),
    (REQ, (*CF, "request", "headers"), None, "raises"),
    (RESP, (*CF, "response"), DELETE, "raises"),
    # Missing headers or query are tolerated; an unreadable URI is a 400 like any bad key.
    (REQ, (*CF, "request", "headers"), DELETE, "request"),
    (REQ, (*CF, "request", "querystring"), DELETE, "request"),
    (REQ, (*CF, "request", "method"), DELETE, "request"),
    (REQ, (*CF, "request", "uri"), "no-slash", "400"),
    # A response is never turned into an error: whatever is wrong with it, it is served.
    (RESP, (*CF, "response", "headers"), [], "response"),
    (RESP, (*CF, "response", "status"), "abc", "response"),
    (RESP, (*CF, "request", "headers", KEY_HEADER), DELETE, "response"),
    (RESP, (*CF, "request", "headers", KEY_HEADER), BAD_KEY, "response"),
    # Equally impossible from CloudFront, and refused the same way, although the response
    # itself could still be served: an event of the wrong shape says the wiring is wrong.
    (RESP, (*CF, "request", "headers"), "junk", "raises"),
]


@pytest.mark.parametrize(("name", "where", "value", "outcome"), DECISIONS)
def test_malformed_event_decisions(
    name: str, where: tuple[Any, ...], value: Any, outcome: str
) -> None:
    """The documented decision for each kind of broken event (docs/RELIABILITY.md)."""
    evt = event(name)
    parent: Any = evt
    for step in where[:-1]:
        parent = parent[step]
    if value is DELETE:
        del parent[where[-1]]
    else:
        parent[where[-1]] = copy.deepcopy(value)
    handler = make_edge_handler(
        CONFIGS["http"],
        queue_url="q",
        sqs_client=Sink(),
        secrets=SecretResolver(environ=dict(SECRETS)),
    )
    if outcome == "raises":
        with pytest.raises(MalformedEvent):
            handler(evt, None)
        return
    result = handler(evt, None)
    if outcome == "400":
        assert result["status"] == "400"
    elif outcome == "request":
        assert result["origin"]["custom"]["domainName"] == "old.example.com"
        assert result["headers"]["authorization"][0]["value"].startswith("Bearer ")
    else:
        assert result is evt["Records"][0]["cf"]["response"]


class Sink:
    """An SQS client that accepts and records."""

    def __init__(self) -> None:
        self.sent: list[str] = []

    def send_message(self, *, QueueUrl: str, MessageBody: str) -> dict[str, str]:  # noqa: N803
        self.sent.append(MessageBody)
        return {"MessageId": str(len(self.sent))}


# --- malformed SQS records -------------------------------------------------------------------


def sqs_record(index: int, body: Any) -> dict[str, Any]:
    record: dict[str, Any] = json.loads((EVENTS / "sqs-copy-job.json").read_text())["Records"][0]
    record["messageId"] = f"m{index}"
    if body is None:
        del record["body"]
    else:
        record["body"] = body
    return record


BAD_BODIES = [
    "",
    "not json",
    "[]",
    "null",
    "42",
    '"just a string"',
    "{}",
    '{"key": 5}',
    '{"key": null}',
    '{"key": ["a"]}',
    '{"keys": ["a"]}',
    "{" * 5000,
    None,  # no body at all
    123,  # not a string
]
INVALID_KEYS = ["", "../etc/passwd", "a/./b", "a\\b", "a\x00b", "k" * 1100, ".backorigin/leases/x"]


@pytest.fixture
def fetcher(lab: Lab) -> Any:
    return make_fetcher_handler(lab.config(), s3_client=lab.direct)


def test_malformed_sqs_records_never_sink_the_batch(lab: Lab, fetcher: Any) -> None:
    """Unreadable jobs are dropped (metric MalformedJobs), invalid keys are failed copies
    (redelivered, then dead-lettered), and the good jobs around them are copied."""
    good = [f"sqs/good-{n}.txt" for n in range(3)]
    for key in good:
        lab.origin.put(key, key.encode())
    bodies: list[Any] = [json.dumps({"key": good[0]})]
    bodies += BAD_BODIES
    bodies.append(json.dumps({"key": good[1]}))
    bodies += [json.dumps({"key": key}) for key in INVALID_KEYS]
    bodies.append(json.dumps({"key": good[2]}))
    records = [sqs_record(n, body) for n, body in enumerate(bodies)]
    response = fetcher({"Records": records}, None)
    failed = {item["itemIdentifier"] for item in response["batchItemFailures"]}
    invalid = {
        r["messageId"]
        for r in records
        if r.get("body") in [json.dumps({"key": k}) for k in INVALID_KEYS]
    }
    assert failed == invalid
    for key in good:
        stored = lab.checker.stored(key)
        assert stored is not None
        assert stored[0] == key.encode()
    listed = lab.s3.list_objects_v2(Bucket=lab.bucket, Prefix=".backorigin/").get("KeyCount", 0)
    assert listed == 0, "no job may write under the reserved prefix"


@pytest.mark.parametrize(
    "event_",
    [
        {"Records": "x"},
        {"Records": []},
        {"Records": [None]},
        {"Records": [1, 2]},
        {"Records": [{}]},
    ],
    ids=["not-a-list", "empty", "null-record", "numbers", "empty-record"],
)
def test_batches_that_are_not_sqs_records_are_refused(
    lab: Lab, fetcher: Any, event_: dict[str, Any]
) -> None:
    """A record without a messageId cannot be acknowledged or reported on its own, so such a
    batch fails as a whole (SQS never sends one; if it did, it would be redelivered and
    dead-lettered). Nothing is copied."""
    lab.origin.put("sqs/x", b"x")
    with pytest.raises(Exception) as info:  # noqa: PT011 - a refusal of any kind
        fetcher(event_, None)
    assert not isinstance(info.value, AssertionError)
    assert lab.checker.stored("sqs/x") is None


# --- SSRF through the HTTP origin's redirects --------------------------------------------------


class Decoy(ThreadingHTTPServer):
    """A server on another loopback address that no request may ever reach."""

    daemon_threads = True

    def __init__(self) -> None:
        hits: list[str] = []

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                hits.append(self.path)
                self.send_response(200)
                self.send_header("Content-Length", "6")
                self.end_headers()
                self.wfile.write(b"stolen")

            do_HEAD = do_GET  # noqa: N815

            def log_message(self, *args: Any) -> None:
                return

        super().__init__(("127.0.0.2", 0), Handler)
        self.hits = hits
        threading.Thread(target=self.serve_forever, daemon=True).start()


@pytest.fixture(scope="module")
def decoy() -> Iterator[Decoy]:
    server = Decoy()
    yield server
    server.shutdown()
    server.server_close()


def ssrf_targets(decoy: Decoy, origin_url: str) -> list[str]:
    port = decoy.server_address[1]
    here = urllib.parse.urlsplit(origin_url)
    return [
        f"http://127.0.0.2:{port}/x",  # a loopback neighbour of the origin
        "http://169.254.169.254/latest/meta-data/iam/security-credentials/",
        "http://[fd00:ec2::254]/latest/meta-data/",
        "http://evil.example/x",
        f"http://{here.netloc}@127.0.0.2:{port}/x",  # "user@host": the real host is the decoy
        f"http://127.0.0.2:{port}\\@{here.netloc}/x",  # a backslash parser differential
        f"http://127.0.0.2:{port}%2f@{here.netloc}/x",
        f"//127.0.0.2:{port}/x",  # scheme-relative
        f"http://0x7f000002:{port}/x",  # 127.0.0.2 spelled as a number
        f"http://2130706434:{port}/x",
        f"http://127.2:{port}/x",
        f"http://[::ffff:127.0.0.2]:{port}/x",
        "file:///etc/passwd",
        f"gopher://127.0.0.2:{port}/x",
    ]


@pytest.mark.parametrize("hops", [1, 2])
def test_redirects_towards_other_hosts_are_refused(lab: Lab, decoy: Decoy, hops: int) -> None:
    """Straight away, or after a first, harmless hop within the origin: every hop is judged."""
    engine = lab.engine(http={"retries": 0})
    try:
        for n, target in enumerate(ssrf_targets(decoy, lab.origin.url)):
            key = f"ssrf/{hops}/{n}.bin"
            lab.origin.put(key, b"legit bytes")
            if hops == 2:
                lab.origin.redirect(key, lab.origin.url + key + ".next")
                lab.origin.redirect(key + ".next", target)
            else:
                lab.origin.redirect(key, target)
            result = engine.copy(key)
            assert result.outcome is CopyOutcome.FAILED, (target, result)
            assert "refused" in (result.reason or "") or "redirect" in (result.reason or ""), (
                target,
                result.reason,
            )
            assert lab.checker.stored(key) is None
    finally:
        engine.close()
    assert decoy.hits == [], "a redirect reached another host"


def test_a_listed_redirect_host_that_resolves_to_metadata_is_refused(
    lab: Lab, decoy: Decoy
) -> None:
    """redirect_hosts lets a name through, but not to a link-local or loopback address."""
    key = "ssrf/listed.bin"
    lab.origin.put(key, b"legit")
    port = decoy.server_address[1]
    lab.origin.redirect(key, f"http://cdn.example:{port}/x")
    config = lab.config(http={"retries": 0, "redirect_hosts": "[cdn.example]"})
    for address in ("169.254.169.254", "10.0.0.1", "0.0.0.0"):
        origin_config = config.origins[0]
        assert isinstance(origin_config, HttpOrigin)
        resolver = {"cdn.example": [address]}

        def resolve(host: str, table: dict[str, list[str]] = resolver) -> list[str]:
            return table.get(host) or ["127.0.0.1"]

        adapter = HttpAdapter(origin_config, resolver=resolve)
        engine = CopyEngine(config, s3_client=lab.direct, adapters={"web": adapter})
        result = engine.copy(key)
        engine.close()
        assert result.outcome is CopyOutcome.FAILED, (address, result)
        assert "refused" in (result.reason or ""), result.reason
    assert decoy.hits == []


@pytest.mark.parametrize(
    "key",
    [
        "http://127.0.0.2/x",
        "//127.0.0.2/x",
        "@127.0.0.2/x",
        "a/%2e%2e/%2e%2e/secret",  # literal percent signs: a legal key, sent double-encoded
        "%2e%2e/secret",
        "?x=1",
        "#frag",
    ],
)
def test_keys_never_leave_the_origin_base_path(lab: Lab, decoy: Decoy, key: str) -> None:
    """Keys that look like URLs, authorities or encoded dot segments stay below base_url."""
    base = "base/"
    config = lab.config()
    origin_config = config.origins[0].model_copy(update={"base_url": lab.origin.url + base})
    assert isinstance(origin_config, HttpOrigin)
    adapter = HttpAdapter(origin_config)
    engine = CopyEngine(config, s3_client=lab.direct, adapters={"web": adapter})
    lab.origin.reset_counters()
    result = engine.copy(key)
    engine.close()
    assert result.outcome is CopyOutcome.NOT_FOUND, result
    # Every request the origin got was for exactly base path + key (decoded once).
    asked = lab.origin.request_count(base + key)
    assert asked >= 1
    assert asked == lab.origin.total_requests()
    assert decoy.hits == []


def test_dot_segment_and_backslash_keys_are_refused_without_a_request(lab: Lab) -> None:
    """Refused by the engine itself: neither the origin nor S3 sees a request. (SeaweedFS
    answers 400 to such keys, but S3 stores ``../x`` as an ordinary key, so an S3 error is
    no proof that the engine refused it.)"""
    sent_to_s3: list[str] = []
    client = lab.client(lab.s3_url)
    client.meta.events.register(
        "before-send.s3", lambda request, **_: sent_to_s3.append(request.url)
    )
    engine = CopyEngine(lab.config(), s3_client=client)
    lab.origin.reset_counters()
    try:
        for key in ("../x", "a/../../x", "a/./x", "a\\..\\x", "..", ".", "a/.."):
            result = engine.copy(key)
            assert result.outcome is CopyOutcome.FAILED, (key, result)
            assert "invalid key" in (result.reason or ""), (key, result.reason)
    finally:
        engine.close()
    assert lab.origin.total_requests() == 0
    assert sent_to_s3 == []
    # The counting hook does see what the engine sends for an acceptable key.
    engine = CopyEngine(lab.config(), s3_client=client)
    try:
        assert engine.copy("dots/a..b/.x").outcome is CopyOutcome.NOT_FOUND
    finally:
        engine.close()
    assert sent_to_s3 != []


# --- objects over the size limit ------------------------------------------------------------


@pytest.mark.parametrize("head", ["head", "no-head"])
def test_objects_over_the_size_limit_are_refused_before_download(lab: Lab, head: str) -> None:
    key = f"size/{head}.bin"
    lab.origin.put(key, b"x" * (2 * 1024 * 1024))
    if head == "no-head":
        lab.origin.refuse_head(key)  # the size comes from a one-byte ranged GET instead
    lab.origin.reset_counters()
    engine = lab.engine(copy={"max_object_size": "1MiB"})
    result = engine.copy(key)
    engine.close()
    assert result.outcome is CopyOutcome.TOO_LARGE, result
    assert lab.origin.bytes_served(key) <= (0 if head == "head" else 1)
    if head == "head":
        assert lab.origin.request_count(key, "GET") == 0
    assert lab.checker.stored(key) is None
    assert lab.checker.open_uploads(key) == []


# --- configs with inline secrets --------------------------------------------------------------

SECRET_FIELDS = [
    ("http", "{mode: bearer, token: %s}"),
    ("http", "{mode: basic, username: u, password: %s}"),
    ("http", "{mode: headers, headers: {X-Api-Key: %s}}"),
    ("gcs", "{mode: hmac, access_id: {secret: {env: A}}, secret: %s}"),
    ("gcs", "{mode: service_account, credentials: %s}"),
    ("azure", "{mode: sas, token: %s}"),
    ("azure", "{mode: account_key, account_key: %s}"),
    ("azure", "{mode: connection_string, connection_string: %s}"),
    ("s3", "{mode: access_key, access_key_id: {secret: {env: A}}, secret_access_key: %s}"),
]
ORIGIN_HEADS = {
    "http": "{name: o, type: http, base_url: 'https://x.example/', auth: AUTH}",
    "gcs": "{name: o, type: gcs, bucket: b-ucket, auth: AUTH}",
    "azure": (
        "{name: o, type: azure, account_url: 'https://a.blob.core.windows.net', "
        "container: c-1, auth: AUTH}"
    ),
    "s3": "{name: o, type: s3, bucket: b-ucket, region: eu-west-1, auth: AUTH}",
}
LITERAL = "Inl1neS3cretValue-0xC0FFEE"
LITERAL_FORMS = [
    LITERAL,
    f"'{LITERAL}'",
    f"[{LITERAL}]",
    f"{{secret: {LITERAL}}}",
    f"{{secret: {{value: {LITERAL}}}}}",
    f"{{value: {LITERAL}}}",
    f"{{secret: {{env: X, value: {LITERAL}}}}}",
    f"{{secret: {{env: {{nested: {LITERAL}}}}}}}",
]


@pytest.mark.parametrize("form", LITERAL_FORMS)
@pytest.mark.parametrize(("kind", "auth"), SECRET_FIELDS)
def test_inline_secrets_are_rejected_without_being_echoed(kind: str, auth: str, form: str) -> None:
    origin = ORIGIN_HEADS[kind].replace("AUTH", auth % form)
    text = f"bucket: {{name: b-ucket}}\norigins:\n  - {origin}\n"
    yaml.safe_load(text)  # the test's own YAML must be valid
    with pytest.raises(ConfigError) as info:
        load_config(text)
    shown = str(info.value) + repr(info.value) + repr(getattr(info.value, "issues", ""))
    assert LITERAL not in shown, shown
