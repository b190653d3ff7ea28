"""Single PutObject requests through the AWS Common Runtime's S3 client.

botocore spends about a millisecond of CPU on every request it sends (parameter handling, a
dozen events, its Python HTTP stack), all of it under the GIL. For a bulk copy of small
objects that is most of what the client does; rclone-class throughput needs less. The CRT's
S3 client (``awscrt``, already the engine's checksum library) signs, sends and retries in
native code on its own event-loop threads, at about a third of botocore's CPU per 64 KiB
PutObject (``benchmarks/RESULTS.md``). Only the engine's one-request objects go this way;
multipart uploads, listings and the rest stay on botocore, where per-request overhead is
small beside the bytes.

The request is the one botocore would send:

* its URL comes from botocore's own endpoint resolution (a PutObject of a probe key that
  botocore prepares but does not send, once), so virtual-hosted or path-style addressing,
  custom endpoints, FIPS and dual-stack endpoints follow the client's configuration;
* its headers are named by botocore's service model for the PutObject parameters given;
* it is signed with the client's own credentials (refreshable ones are refreshed), and the
  server's certificate is checked against the bundle botocore checks it against;
* an error answer is parsed by botocore's XML parser into a :class:`ClientError`, which
  :mod:`backorigin.transfer.bucket` maps like every other S3 failure;
* the CRT retries 5xx answers, throttling and dropped connections, up to four retries (five
  attempts) with exponential backoff and jitter, as botocore's standard mode (five attempts)
  does for the other calls.
"""

from __future__ import annotations

__all__ = ["CrtPutter"]

import os
import threading
import urllib.request
import uuid
from collections.abc import Mapping
from email.utils import format_datetime
from typing import TYPE_CHECKING, Any
from urllib.parse import quote, urlsplit

from awscrt import http as crt_http
from awscrt import io as crt_io
from awscrt import s3 as crt_s3
from botocore.awsrequest import AWSResponse, HTTPHeaders
from botocore.exceptions import ClientError, HTTPClientError
from botocore.httpsession import get_cert_path
from botocore.parsers import create_parser
from s3transfer.crt import BotocoreCRTCredentialsWrapper

from backorigin.transfer.buffers import Body

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client
else:
    S3Client = Any

_PROBE_KEY = "backorigin-probe"
_OPERATION = "PutObject"


class CrtPutter:
    """Sends PutObject requests for one bucket through a CRT S3 client.

    Build it with :meth:`for_client`, which matches an existing boto3 client (endpoint,
    region, credentials, connection limit). Thread-safe: the copy engine's workers share one.

    Args:
        client: The boto3 S3 client whose configuration the requests follow.
        bucket: The bucket written to.
        credentials: The client's botocore credentials.
        timeout: Seconds one PutObject may take, retries included, before it is cancelled.
    """

    def __init__(
        self, client: S3Client, bucket: str, credentials: Any, *, timeout: float = 300.0
    ) -> None:
        self.timeout = timeout
        probe = f"{_PROBE_KEY}-{uuid.uuid4().hex}"
        url = urlsplit(_put_url(client, bucket, probe))
        if not url.path.endswith("/" + probe) or not url.hostname:
            raise ValueError(f"cannot tell where botocore sends a PutObject for {bucket!r}")
        self._host = url.netloc.rpartition("@")[2]
        self._prefix = url.path[: -len(probe)]
        operation = client.meta.service_model.operation_model(_OPERATION)
        assert operation.input_shape is not None
        assert operation.output_shape is not None
        self._input, self._output = operation.input_shape, operation.output_shape
        self._parser = create_parser("rest-xml")
        tls = url.scheme != "http"
        config: Any = client.meta.config
        self._client = crt_s3.S3Client(
            region=client.meta.region_name or "us-east-1",
            credential_provider=BotocoreCRTCredentialsWrapper(
                credentials
            ).to_crt_credentials_provider(),
            tls_mode=crt_s3.S3RequestTlsMode.ENABLED if tls else crt_s3.S3RequestTlsMode.DISABLED,
            tls_connection_options=(
                _trust_as_botocore(client).new_connection_options() if tls else None
            ),
            max_active_connections_override=int(config.max_pool_connections or 10),
            connect_timeout_ms=int(float(config.connect_timeout or 60) * 1000),
            retry_config=crt_s3.S3RetryConfig(max_retries=4),
        )

    @property
    def address(self) -> tuple[str, str]:
        """Where requests go: the ``Host`` and the path every key is appended to."""
        return self._host, self._prefix

    @classmethod
    def for_client(cls, client: S3Client, bucket: str) -> CrtPutter | None:
        """A putter matching ``client``; None when botocore should keep sending its PutObjects.

        That is when the client sends unsigned requests, or sends them through an HTTP proxy
        (its config's ``proxies`` or the ``HTTP(S)_PROXY`` variables): the CRT client made
        here connects directly, which a network that only lets a proxy out would refuse.
        """
        if _proxied(client):
            return None
        # The client's resolved credentials, as boto3's own CRT transfer manager reads them.
        credentials = client._get_credentials()  # type: ignore[attr-defined]
        if credentials is None:
            return None
        return cls(client, bucket, credentials)

    def put(
        self, key: str, body: bytes | bytearray | memoryview, params: Mapping[str, Any]
    ) -> dict[str, str]:
        """PUT ``body`` at ``key`` with PutObject ``params`` (boto3 names); the answer's headers.

        Header names in the result are lower case.

        Raises:
            ClientError: S3 answered with an error (after the CRT's retries).
            HTTPClientError: no answer (connection failures after retries, or the timeout).
        """
        headers = crt_http.HttpHeaders(
            [("Host", self._host), ("Content-Length", str(len(body))), *self._headers(params)]
        )
        request = crt_http.HttpRequest(
            "PUT", self._prefix + quote(key, safe="/~"), headers, Body(body)
        )
        answer: dict[str, Any] = {}
        done = threading.Event()

        def on_headers(status_code: int, headers: list[tuple[str, str]], **_: Any) -> None:
            answer["status"] = status_code
            answer["headers"] = headers

        def on_done(
            error: BaseException | None,
            error_headers: list[tuple[str, str]] | None,
            error_body: bytes | None,
            status_code: int | None,
            **_: Any,
        ) -> None:
            answer.update(error=error, error_headers=error_headers, error_body=error_body)
            answer["status"] = status_code or answer.get("status")
            done.set()

        meta_request = self._client.make_request(
            type=crt_s3.S3RequestType.DEFAULT,
            operation_name=_OPERATION,
            request=request,
            on_headers=on_headers,
            on_done=on_done,
        )
        if not done.wait(self.timeout):
            meta_request.cancel()
            done.wait()
            raise HTTPClientError(error=f"no answer to PutObject within {self.timeout:g}s")
        status = answer.get("status")
        if answer.get("error") is None and status is not None and 200 <= status < 300:
            return {name.lower(): value for name, value in answer.get("headers") or ()}
        if status is None or answer.get("error_body") is None:
            raise HTTPClientError(error=answer.get("error"))
        raise ClientError(self._parse_error(status, answer), _OPERATION)

    def _headers(self, params: Mapping[str, Any]) -> list[tuple[str, str]]:
        """The request headers for PutObject parameters, named by botocore's service model."""
        headers: list[tuple[str, str]] = []
        for name, value in params.items():
            shape = self._input.members[name]
            location = shape.serialization.get("location")
            wire = shape.serialization.get("name", name)
            if location == "headers":  # a map: x-amz-meta-<name>
                headers.extend((wire + item, str(text)) for item, text in value.items())
            elif location == "header" and shape.type_name == "timestamp":
                headers.append((wire, format_datetime(value, usegmt=True)))
            elif location == "header":
                headers.append((wire, str(value)))
            else:
                raise ValueError(f"PutObject parameter {name} is not sent as a header")
        return headers

    def _parse_error(self, status: int, answer: Mapping[str, Any]) -> Any:
        """botocore's reading of an error answer: ``Error`` and ``ResponseMetadata``."""
        headers = {name.lower(): value for name, value in answer.get("error_headers") or ()}
        return self._parser.parse(
            {"status_code": status, "headers": headers, "body": answer.get("error_body") or b""},
            self._output,
        )


def _put_url(client: S3Client, bucket: str, probe: str) -> str:
    """The URL botocore would send a PutObject of ``probe`` (a unique key) in ``bucket`` to.

    botocore resolves the endpoint and builds the request, then asks ``before-call``
    handlers for an answer before it sends anything; this one notes the URL and answers, so
    nothing goes out. The client may be shared with other threads, which may be putting
    objects or building putters of their own at the same moment: the handler is registered
    under a name of its own and answers only the request for ``probe``, letting every other
    PutObject through untouched.
    """
    seen: list[str] = []

    def answer(params: dict[str, Any], **_: Any) -> tuple[AWSResponse, dict[str, Any]] | None:
        url = str(params["url"])
        if urlsplit(url).path.rpartition("/")[2] != probe:
            return None
        seen.append(url)
        return AWSResponse(url, 200, HTTPHeaders(), None), {}

    # Typed as returning None in the stubs; botocore takes a before-call answer as the reply.
    events: Any = client.meta.events
    event, handler_id = "before-call.s3.PutObject", f"backorigin-put-url-{probe}"
    events.register_first(event, answer, unique_id=handler_id)
    try:
        client.put_object(Bucket=bucket, Key=probe, Body=b"")
    finally:
        events.unregister(event, unique_id=handler_id)
    if len(seen) != 1:
        raise ValueError(f"cannot tell where botocore sends a PutObject for {bucket!r}")
    return seen[0]


def _trust_as_botocore(client: S3Client) -> crt_io.ClientTlsContext:
    """The TLS context that verifies servers exactly as ``client`` does.

    botocore settles ``verify`` when it makes the client: the ``verify`` argument, else the
    profile's ``ca_bundle`` or ``AWS_CA_BUNDLE``, else ``REQUESTS_CA_BUNDLE``, else ``True``;
    the settled value is on the client's HTTP session. ``True`` means botocore's default
    bundle (certifi's, when installed), not the system's store: the CRT is given that same
    file, so a machine whose system store lacks a CA botocore trusts (a minimal container)
    puts through the CRT as it would through botocore. ``False`` turns verification off.
    """
    session = getattr(getattr(client, "_endpoint", None), "http_session", None)
    verify: object = get_cert_path(getattr(session, "_verify", True))
    options = crt_io.TlsContextOptions()
    if verify is False:
        options.verify_peer = False
    elif isinstance(verify, str | os.PathLike):
        options.override_default_trust_store_from_path(None, os.fspath(verify))
    else:
        raise ValueError(f"cannot follow the client's TLS verification setting {verify!r}")
    return crt_io.ClientTlsContext(options)


def _proxied(client: S3Client) -> bool:
    """Whether botocore sends ``client``'s requests through a proxy, as it decides that."""
    endpoint = urlsplit(client.meta.endpoint_url)
    host = endpoint.hostname or ""
    configured: Mapping[str, str] = getattr(client.meta.config, "proxies", None) or {}
    if configured.get(endpoint.scheme) or configured.get(f"{endpoint.scheme}://{host}"):
        return True
    environment = urllib.request.getproxies()
    return bool(environment.get(endpoint.scheme)) and not urllib.request.proxy_bypass(host)
