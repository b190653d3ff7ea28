"""Signing from an adapter's edge recipe: the same request its own ``sign()`` makes, byte for
byte (fixed clocks where time enters), accepted by servers that check it, with secrets read
from the environment or from Secrets Manager (moto's server) without pydantic or boto3."""

from __future__ import annotations

import base64
import json
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from types import SimpleNamespace
from typing import Any, Literal

import boto3
import pytest
import urllib3
from moto.server import ThreadedMotoServer

from backorigin.adapters import EDGE_SIGNING_KINDS, create_adapter, register_adapter
from backorigin.adapters.http import HttpAdapter
from backorigin.bundling import edge_plan
from backorigin.config import SecretResolver, load_config
from backorigin.config.origins import HttpOrigin
from backorigin.errors import BackoriginError, Unauthenticated
from backorigin.handlers import make_edge_handler
from backorigin.handlers.edge_secrets import EdgeSecrets, EdgeSecretUnavailable
from backorigin.handlers.edge_signing import KINDS, EdgeSigner
from backorigin.local.cloudfront import add_origin_request_headers
from backorigin.plugins import adapter_plugins
from backorigin.testing.http_origin import HttpOriginServer
from backorigin.testing.servers import AZURITE_ACCOUNT, AZURITE_KEY
from backorigin.testing.service_account import make_service_account_key
from backorigin.testing.strict import StrictGcsProxy
from backorigin.types import OriginRequest

EVENTS = Path(__file__).resolve().parent.parent / "events"
FIXED = 1_796_500_000.75  # 2026-12-06, with a fraction: both sides must drop it alike
ACCOUNT_KEY = base64.b64encode(b"an account key of thirty-two b.").decode()
SERVICE_ACCOUNT = make_service_account_key()
ENV = {
    "PW": "s3cr:et pässword",
    "TOKEN": "tok-123",
    "KEY": "k-1",
    "TENANT": "t 2",
    "SAS": "?sv=2022-11-02&ss=b&srt=o&sp=r&se=2030-01-01T00%3A00%3A00Z&sig=a%2Bb%2F%3D",
    "ACCOUNT_KEY": ACCOUNT_KEY,
    "CONN_KEY": f"DefaultEndpointsProtocol=https;AccountName=other;AccountKey={ACCOUNT_KEY};",
    "CONN_SAS": "BlobEndpoint=https://x.example;SharedAccessSignature=?sv=2021-08-06&sp=r&sig=zz",
    "CONN_NONE": "AccountName=other;EndpointSuffix=core.windows.net",
    "HMAC_ID": "GOOG1RECIPETEST",
    "HMAC_SECRET": "recipe-secret",
    "SA_KEY": SERVICE_ACCOUNT.json,
}
ORIGINS = {
    "http-basic": "{type: http, base_url: 'https://h.example/b/', prefix: 'p/', "
    "auth: {mode: basic, username: alice, password: {secret: {env: PW}}}}",
    "http-bearer": "{type: http, base_url: 'https://h.example/', "
    "auth: {mode: bearer, token: {secret: {env: TOKEN}}}}",
    "http-headers": "{type: http, base_url: 'http://h.example:8080/', auth: {mode: headers, "
    "headers: {X-Api-Key: {secret: {env: KEY}}, x-tenant: {secret: {env: TENANT}}}}}",
    "azure-sas": "{type: azure, account_url: 'https://acct.blob.core.windows.net', "
    "container: cont, auth: {mode: sas, token: {secret: {env: SAS}}}}",
    "azure-account-key": "{type: azure, account_url: 'https://acct.blob.core.windows.net', "
    "container: cont, prefix: 'deep/er/', auth: {mode: account_key, "
    "account_key: {secret: {env: ACCOUNT_KEY}}}}",
    "azure-account-key-http": "{type: azure, account_url: 'http://127.0.0.1:10000/devacct', "
    "container: cont, auth: {mode: account_key, account_key: {secret: {env: ACCOUNT_KEY}}}}",
    "azure-connection-key": "{type: azure, account_url: 'https://acct.blob.core.windows.net', "
    "container: cont, auth: {mode: connection_string, "
    "connection_string: {secret: {env: CONN_KEY}}}}",
    "azure-connection-sas": "{type: azure, account_url: 'https://acct.blob.core.windows.net', "
    "container: cont, auth: {mode: connection_string, "
    "connection_string: {secret: {env: CONN_SAS}}}}",
    "azure-connection-none": "{type: azure, account_url: 'https://acct.blob.core.windows.net', "
    "container: cont, auth: {mode: connection_string, "
    "connection_string: {secret: {env: CONN_NONE}}}}",
    "gcs-hmac": "{type: gcs, bucket: old-media, prefix: 'legacy/', auth: {mode: hmac, "
    "access_id: {secret: {env: HMAC_ID}}, secret: {secret: {env: HMAC_SECRET}}}}",
    "gcs-hmac-endpoint": "{type: gcs, bucket: old, endpoint_url: 'http://127.0.0.1:4443', "
    "auth: {mode: hmac, access_id: {secret: {env: HMAC_ID}}, "
    "secret: {secret: {env: HMAC_SECRET}}}}",
    "gcs-service-account": "{type: gcs, bucket: old-media, prefix: 'legacy/', "
    "auth: {mode: service_account, credentials: {secret: {env: SA_KEY}}}}",
}
REQUESTS = [
    OriginRequest("GET", "/p/cat%20photo.jpg", "", {"host": "h", "range": "bytes=0-9"}),
    OriginRequest(
        "GET",
        "/deep/er/legacy/caf%C3%A9/%C3%BC%2Bx%3D.txt",
        "v=1&comp=list&sig=viewer&sp=w",
        {
            "host": "h",
            "x-goog-meta": "viewer",
            "x-amz-x": "y",
            "authorization": "Basic viewer",
            "user-agent": "ua",
        },
    ),
    OriginRequest("HEAD", "/legacy/a/b~c(d)", "X-Goog-Date=1&a=%20b", {"host": "h"}),
]


def config_of(origin: str) -> Any:
    return load_config(
        "bucket: {name: media-new, region: eu-west-1}\n"
        f"origins:\n  - {{name: old, {ORIGINS[origin][1:]}\n"
    )


class FixedDatetime(datetime):
    @classmethod
    def now(cls, tz: Any = None) -> FixedDatetime:
        return cls.fromtimestamp(FIXED, tz or UTC)


@pytest.fixture
def fixed_clock(monkeypatch: pytest.MonkeyPatch) -> None:
    # The adapters read the time where they sign: the Azure SAS's start and expiry, the
    # date of a GCS signed URL.
    monkeypatch.setattr("backorigin.adapters.azure.datetime", FixedDatetime)
    monkeypatch.setattr("backorigin.adapters.gcs.signing.datetime", FixedDatetime)


def test_the_runtime_applies_every_kind_adapters_may_declare() -> None:
    assert frozenset(EDGE_SIGNING_KINDS) == KINDS


@pytest.mark.usefixtures("fixed_clock")
@pytest.mark.parametrize("origin", list(ORIGINS))
def test_a_recipe_signs_as_the_adapter_does(origin: str) -> None:
    config = config_of(origin)
    planned = edge_plan(config)["origins"]["old"]
    assert planned["lean"] is True
    recipe = planned["signing"]
    assert recipe["kind"] in EDGE_SIGNING_KINDS
    text = json.dumps(recipe)
    for name, value in ENV.items():  # references only, never a value
        assert value not in text, name
    adapter = create_adapter(config.origins[0], secrets=SecretResolver(environ=ENV))
    signer = EdgeSigner(recipe, EdgeSecrets(environ=ENV), lambda: FIXED)
    for request in REQUESTS:
        if origin == "azure-account-key" and not request.uri.startswith("/deep/er/"):
            continue  # not below the prefix: both refuse it (checked below)
        expected = adapter.sign(request)
        uri, query, headers = signer.sign(
            request.method, request.uri, request.querystring, request.headers
        )
        assert (uri, query, headers) == (
            expected.uri,
            expected.querystring,
            dict(expected.headers),
        ), request
        if origin != "azure-connection-none":
            assert (uri, query, headers) != (
                request.uri,
                request.querystring,
                dict(request.headers),
            )


@pytest.mark.usefixtures("fixed_clock")
def test_a_uri_outside_the_prefix_is_refused_by_both() -> None:
    config = config_of("azure-account-key")
    adapter = create_adapter(config.origins[0], secrets=SecretResolver(environ=ENV))
    signer = EdgeSigner(edge_plan(config)["origins"]["old"]["signing"], EdgeSecrets(environ=ENV))
    request = REQUESTS[0]
    with pytest.raises(BackoriginError) as theirs:
        adapter.sign(request)
    with pytest.raises(BackoriginError) as ours:
        signer.sign(request.method, request.uri, request.querystring, request.headers)
    assert (type(ours.value), str(ours.value)) == (type(theirs.value), str(theirs.value))


def test_a_bad_account_key_is_refused_by_both() -> None:
    config = config_of("azure-account-key")
    bad = {**ENV, "ACCOUNT_KEY": "not base64!"}
    adapter = create_adapter(config.origins[0], secrets=SecretResolver(environ=bad))
    signer = EdgeSigner(edge_plan(config)["origins"]["old"]["signing"], EdgeSecrets(environ=bad))
    request = REQUESTS[1]
    with pytest.raises(Unauthenticated) as theirs:
        adapter.sign(request)
    with pytest.raises(Unauthenticated) as ours:
        signer.sign(request.method, request.uri, request.querystring, request.headers)
    assert str(ours.value) == str(theirs.value)


class RecipelessOrigin(HttpOrigin):
    type: Literal["recipeless"]  # type: ignore[assignment]


class RecipelessAdapter(HttpAdapter):
    """An adapter that signs (HTTP's way) but declares no edge recipe."""

    config_model = RecipelessOrigin  # type: ignore[assignment]

    @classmethod
    def edge_recipe(cls, config: Any) -> None:
        return None


def inconsistent_key(text: str) -> str:
    """The key file ``text`` with a wrong private exponent (CRT parts derived from it): it
    loads when the consistency check is skipped, and its signatures do not verify."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import rsa

    info = json.loads(text)
    key = serialization.load_pem_private_key(info["private_key"].encode(), None)
    assert isinstance(key, rsa.RSAPrivateKey)
    numbers = key.private_numbers()
    d = numbers.d + 2
    broken = rsa.RSAPrivateNumbers(
        numbers.p,
        numbers.q,
        d,
        d % (numbers.p - 1),
        d % (numbers.q - 1),
        numbers.iqmp,
        numbers.public_numbers,
    ).private_key(unsafe_skip_rsa_key_validation=True)
    info["private_key"] = broken.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    ).decode()
    return json.dumps(info)


@pytest.mark.parametrize("key_text", ["not json", "[1]", '{"client_email": "a@b"}', "inconsistent"])
def test_a_bad_service_account_key_is_refused_by_both(key_text: str) -> None:
    if key_text == "inconsistent":
        key_text = inconsistent_key(SERVICE_ACCOUNT.json)
    config = config_of("gcs-service-account")
    bad = {**ENV, "SA_KEY": key_text}
    adapter = create_adapter(config.origins[0], secrets=SecretResolver(environ=bad))
    recipe = edge_plan(config)["origins"]["old"]["signing"]
    signer = EdgeSigner(recipe, EdgeSecrets(environ=bad))
    request = REQUESTS[0]
    with pytest.raises(Unauthenticated) as theirs:
        adapter.sign(request)
    with pytest.raises(Unauthenticated) as ours:
        signer.sign(request.method, request.uri, request.querystring, request.headers)
    for refused in (theirs.value, ours.value):
        assert "the service account key in" in str(refused)
    assert str(ours.value).split(" (")[0] == str(theirs.value).split(" (")[0]


@pytest.fixture
def recipeless() -> Iterator[None]:
    register_adapter("recipeless", RecipelessAdapter)
    yield
    adapter_plugins.unregister("recipeless")


@pytest.mark.usefixtures("recipeless")
def test_modes_without_a_recipe_stay_on_the_adapters_path() -> None:
    config = load_config("""\
bucket: {name: media-new, region: eu-west-1}
origins:
  - {name: own, type: recipeless, base_url: 'https://h.example/',
     auth: {mode: bearer, token: {secret: {env: TOKEN}}}}
  - {name: anon, type: azure, account_url: 'https://a.blob.core.windows.net', container: cont}
""")
    origins = edge_plan(config)["origins"]
    assert (origins["own"]["lean"], origins["own"]["signing"]) == (False, None)
    assert (origins["anon"]["lean"], origins["anon"]["signing"]) == (True, None)


# --- secrets -------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def moto() -> Iterator[SimpleNamespace]:
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    url = f"http://{host}:{port}"
    try:

        def client(region: str) -> Any:
            return boto3.client(
                "secretsmanager",
                region_name=region,
                endpoint_url=url,
                aws_access_key_id="testing",
                aws_secret_access_key="testing",
            )

        yield SimpleNamespace(url=url, client=client)
    finally:
        server.stop()


def test_secrets_manager_values_resolve_as_the_full_resolver_does(moto: SimpleNamespace) -> None:
    far = moto.client("ap-southeast-2")
    arn = far.create_secret(Name="edge-far", SecretString=json.dumps({"token": "far-token"}))
    near = moto.client("us-east-1")
    near.create_secret(Name="edge-near", SecretString="plain-value")
    environ = {
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_REGION": "us-east-1",
        "AWS_ENDPOINT_URL_SECRETS_MANAGER": moto.url,
    }
    now = [100.0]
    secrets = EdgeSecrets(environ=environ, clock=lambda: now[0])
    # By ARN: read in the ARN's region (the secret exists only there); by name: AWS_REGION.
    assert secrets({"aws_secretsmanager": arn["ARN"], "key": "token"}) == "far-token"
    assert secrets({"aws_secretsmanager": "edge-near"}) == "plain-value"
    full = SecretResolver(secretsmanager_client=near)
    from backorigin.config.secrets import SecretRef

    ref = SecretRef.model_validate({"secret": {"aws_secretsmanager": "edge-near"}})
    assert full.resolve(ref).get_secret_value() == "plain-value"
    # Cached for five minutes from the read, then read again.
    near.put_secret_value(SecretId="edge-near", SecretString="rotated")
    now[0] += 299
    assert secrets({"aws_secretsmanager": "edge-near"}) == "plain-value"
    now[0] += 2
    assert secrets({"aws_secretsmanager": "edge-near"}) == "rotated"
    with pytest.raises(EdgeSecretUnavailable, match="ResourceNotFoundException"):
        secrets({"aws_secretsmanager": "missing"})
    with pytest.raises(EdgeSecretUnavailable, match="has no field 'nope'"):
        secrets({"aws_secretsmanager": arn["ARN"], "key": "nope"})
    with pytest.raises(EdgeSecretUnavailable, match="environment variable NOPE is not set"):
        secrets({"env": "NOPE"})


def test_file_references_resolve(tmp_path: Path) -> None:
    (tmp_path / "token").write_text("from-a-file\n")
    assert EdgeSecrets(environ={})({"file": str(tmp_path / "token")}) == "from-a-file"


# --- the real servers accept what the recipes sign ----------------------------------------------


def replay(event: dict[str, Any], request: dict[str, Any]) -> urllib3.BaseHTTPResponse:
    """Send the request as CloudFront would after the origin-request trigger."""
    sent = add_origin_request_headers(
        request,
        request_id=event["Records"][0]["cf"]["config"]["requestId"],
        client_ip=request["clientIp"],
    )
    custom = sent["origin"]["custom"]
    url = f"{custom['protocol']}://{custom['domainName']}:{custom['port']}{custom['path']}"
    url += sent["uri"] + (f"?{sent['querystring']}" if sent["querystring"] else "")
    headers = {values[0]["key"]: values[0]["value"] for values in sent["headers"].values()}
    return urllib3.request("GET", url, headers=headers, redirect=False)


def miss(config_text: str, environ: dict[str, str]) -> tuple[dict[str, Any], dict[str, Any]]:
    handler = make_edge_handler(load_config(config_text), edge_secrets=EdgeSecrets(environ=environ))
    event = json.loads((EVENTS / "origin-request-secondary.json").read_text())
    request = handler(json.loads(json.dumps(event)), None)
    assert "status" not in request, request  # not a generated error
    return event, request


@pytest.mark.parametrize("mode", ["basic", "headers"])
def test_an_http_origin_accepts_the_recipes_credentials(mode: str) -> None:
    auth = (
        "{mode: basic, username: alice, password: {secret: {env: PW}}}"
        if mode == "basic"
        else "{mode: headers, headers: {X-Api-Key: {secret: {env: KEY}}}}"
    )
    expected = (
        {"Authorization": "Basic " + base64.b64encode(b"alice:pw 1").decode()}
        if mode == "basic"
        else {"X-Api-Key": "key-1"}
    )
    with HttpOriginServer() as origin:
        origin.put("static/cat photo.jpg", b"meow" * 100)
        origin.require_headers("static/cat photo.jpg", expected)
        event, request = miss(
            f"""\
bucket: {{name: media-new, region: eu-west-1}}
origins:
  - {{name: web, type: http, base_url: "{origin.url}static/", auth: {auth}}}
routes:
  - {{prefix: images/, origin: web, rewrite: {{strip_prefix: images/}}}}
""",
            {"PW": "pw 1", "KEY": "key-1"},
        )
        response = replay(event, request)
        assert (response.status, response.data) == (206, b"meow" * 25)


@pytest.mark.parametrize("mode", ["account_key", "connection_string", "sas"])
def test_azurite_accepts_the_recipes_sas(azurite: Any, mode: str) -> None:
    from azure.storage.blob import BlobServiceClient, ContainerSasPermissions
    from azure.storage.blob import generate_container_sas as container_sas

    service = BlobServiceClient.from_connection_string(azurite.connection_string)
    container = f"recipe-{mode.replace('_', '-')}"
    service.create_container(container)
    service.get_blob_client(container, "legacy/img/cat photo.jpg").upload_blob(b"purr" * 50)
    environ = {
        "account_key": {"S": AZURITE_KEY},
        "connection_string": {"S": azurite.connection_string},
        "sas": {
            "S": container_sas(
                AZURITE_ACCOUNT,
                container,
                account_key=AZURITE_KEY,
                permission=ContainerSasPermissions(read=True),
                expiry=datetime.now(UTC).replace(year=datetime.now(UTC).year + 1),
            )
        },
    }[mode]
    field = {"account_key": "account_key", "connection_string": "connection_string"}.get(
        mode, "token"
    )
    text = f"""\
bucket: {{name: media-new, region: eu-west-1}}
origins:
  - name: old
    type: azure
    account_url: "{azurite.account_url}"
    container: {container}
    prefix: legacy/
    auth: {{mode: {mode}, {field}: {{secret: {{env: S}}}}}}
routes:
  - {{prefix: images/, origin: old, rewrite: {{strip_prefix: images/, add_prefix: img/}}}}
"""
    assert edge_plan(load_config(text))["origins"]["old"]["signing"] is not None
    event, request = miss(text, environ)
    assert "sig=" in request["querystring"]
    response = replay(event, request)
    assert (response.status, response.data) == (206, (b"purr" * 50)[:100])
    # Azurite checks the signature: a tampered one is refused.
    request["querystring"] = request["querystring"].replace("sig=", "sig=A", 1)
    assert replay(event, request).status == 403


@pytest.mark.parametrize("mode", ["hmac", "service_account"])
def test_cloud_storage_accepts_the_recipes_signed_url(fake_gcs: Any, mode: str) -> None:
    from google.auth.credentials import AnonymousCredentials
    from google.cloud import storage

    client = storage.Client(
        project="test-project",
        credentials=AnonymousCredentials(),
        client_options={"api_endpoint": fake_gcs.url},
    )
    bucket = client.bucket(f"edge-recipe-{mode.replace('_', '-')}")
    bucket.create()
    bucket.blob("legacy/img/cat photo.jpg").upload_from_string(b"o" * 300)
    if mode == "hmac":
        auth = "{mode: hmac, access_id: {secret: {env: ID}}, secret: {secret: {env: S}}}"
        env = {"ID": "GOOG1RECIPE", "S": "recipe-hmac-secret"}
    else:
        auth = "{mode: service_account, credentials: {secret: {env: SA_KEY}}}"
        env = {"SA_KEY": SERVICE_ACCOUNT.json}
    with StrictGcsProxy(
        fake_gcs.url,
        hmac_keys={"GOOG1RECIPE": "recipe-hmac-secret"},
        rsa_keys={SERVICE_ACCOUNT.email: SERVICE_ACCOUNT.public_pem},
    ) as proxy:
        event, request = miss(
            f"""\
bucket: {{name: media-new, region: us-east-1}}
origins:
  - name: old
    type: gcs
    bucket: {bucket.name}
    endpoint_url: "{proxy.url}"
    prefix: legacy/
    auth: {auth}
routes:
  - {{prefix: images/, origin: old, rewrite: {{strip_prefix: images/, add_prefix: img/}}}}
""",
            env,
        )
        response = replay(event, request)
        assert proxy.refused == []
        assert (response.status, response.data) == (206, b"o" * 100)
        request["querystring"] = request["querystring"].replace("Signature=", "Signature=0", 1)
        assert replay(event, request).status == 403
        assert len(proxy.refused) == 1


def test_an_unreadable_secret_gives_a_503_not_an_exception() -> None:
    handler = make_edge_handler(
        config_of_routed("http-bearer"), edge_secrets=EdgeSecrets(environ={})
    )
    event = json.loads((EVENTS / "origin-request-secondary.json").read_text())
    answer = handler(event, None)
    assert answer["status"] == "503"


def config_of_routed(origin: str) -> Any:
    return load_config(
        "bucket: {name: media-new, region: eu-west-1}\n"
        f"origins:\n  - {{name: old, {ORIGINS[origin][1:]}\n"
        "routes:\n  - {prefix: images/, origin: old}\n"
    )
