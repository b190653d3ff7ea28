"""The edge's SigV4 signer against AWS's published test suite and against botocore."""

from __future__ import annotations

import datetime

import pytest
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials as BotoCredentials

from backorigin.handlers import sigv4

# The SigV4 test suite's fixed inputs (the same suite botocore's signer is tested with).
ACCESS = "AKIDEXAMPLE"
SECRET = "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY"
DATE = "20150830T123600Z"
HOST = "example.amazonaws.com"
TOKEN = "6e86291e8372ff2a2260956d9b8aae1d763fbf315fa00fa31553b73ebf194267"

# (case name, method, path, query, extra headers, body, token, expected signature)
SUITE = [
    ("get-vanilla", "GET", "/", "", {}, b"", None,
     "5fa00fa31553b73ebf1942676e86291e8372ff2a2260956d9b8aae1d763fbf31"),
    ("get-vanilla-query-order-key-case", "GET", "/", "Param2=value2&Param1=value1", {}, b"",
     None, "b97d918cfa904a5beff61c982a1b6f458b799221646efd99d3219ec94cdf2500"),
    ("get-vanilla-empty-query-key", "GET", "/", "Param1=value1", {}, b"", None,
     "a67d582fa61cc504c4bae71f336f98b97f1ea3c7a6bfe1b6e45aec72011b9aeb"),
    ("get-vanilla-query-unreserved", "GET", "/",
     "-._~0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz="
     "-._~0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz", {}, b"", None,
     "9c3e54bfcdf0b19771a7f523ee5669cdf59bc7cc0884027167c21bb143a40197"),
    ("get-utf8", "GET", "/\u1234", "", {}, b"", None,
     "8318018e0b0f223aa2bbf98705b62bb787dc9c0e678f255a891fd03141be5d85"),
    ("get-header-value-trim", "GET", "/", "",
     {"My-Header1": " value1", "My-Header2": ' "a   b   c"'}, b"", None,
     "acc3ed3afb60bb290fc8d2dd0098b9911fcaa05412b367055dee359757a9c736"),
    ("post-x-www-form-urlencoded", "POST", "/", "",
     {"Content-Type": "application/x-www-form-urlencoded"}, b"Param1=value1", None,
     "ff11897932ad3f4e8b18135d722051e5ac45fc38421b1da7b9d196a0fe09473a"),
    ("get-vanilla-with-session-token", "GET", "/", "", {}, b"", TOKEN,
     "07ec1639c89043aa0e3e2de82b96708f198cceab042d4a97044c66dd9f74e7f8"),
]  # fmt: skip


@pytest.mark.parametrize(
    ("method", "path", "query", "extra", "body", "token", "signature"),
    [case[1:] for case in SUITE],
    ids=[case[0] for case in SUITE],
)
def test_published_suite(
    method: str,
    path: str,
    query: str,
    extra: dict[str, str],
    body: bytes,
    token: str | None,
    signature: str,
) -> None:
    headers = {"Host": HOST, **extra}
    added = sigv4.sign(
        method,
        path,
        query,
        headers,
        body,
        credentials=sigv4.Credentials(ACCESS, SECRET, token),
        region="us-east-1",
        service="service",
        date=DATE,
    )
    assert added["x-amz-date"] == DATE
    assert added.get("x-amz-security-token") == token
    scope = f"{ACCESS}/20150830/us-east-1/service/aws4_request"
    assert added["authorization"].startswith(f"AWS4-HMAC-SHA256 Credential={scope}, ")
    assert added["authorization"].endswith(f", Signature={signature}")


@pytest.mark.parametrize(
    ("url", "body", "token"),
    [
        ("https://sqs.eu-west-1.amazonaws.com/", b'{"QueueUrl": "q", "MessageBody": "{}"}', None),
        ("https://sqs.us-east-1.amazonaws.com/", b'{"MessageBody": "caf\xc3\xa9"}', "tok/en+="),
        ("http://127.0.0.1:4566/123456789012/copy?Action=x&b=a%20b", b"", None),
    ],
)
def test_same_signature_as_botocore(url: str, body: bytes, token: str | None) -> None:
    region = url.split(".")[1] if "amazonaws" in url else "us-east-1"
    headers = {
        "Content-Type": "application/x-amz-json-1.0",
        "X-Amz-Target": "AmazonSQS.SendMessage",
    }
    boto = AWSRequest(method="POST", url=url, data=body, headers=dict(headers))
    auth = SigV4Auth(BotoCredentials(ACCESS, SECRET, token), "sqs", region)
    moment = datetime.datetime(2026, 1, 2, 3, 4, 5, tzinfo=datetime.UTC)
    boto.context["timestamp"] = moment.strftime("%Y%m%dT%H%M%SZ")
    auth.add_auth(boto)
    host = url.split("/")[2]
    path, _, query = url.split(host, 1)[1].partition("?")
    added = sigv4.sign(
        "POST",
        path,
        query,
        {"host": host, **headers},
        body,
        credentials=sigv4.Credentials(ACCESS, SECRET, token),
        region=region,
        service="sqs",
        date=boto.context["timestamp"],
    )
    assert added["authorization"] == boto.headers["Authorization"]
    assert added.get("x-amz-security-token") == boto.headers.get("X-Amz-Security-Token")


def test_credentials_come_from_the_lambda_environment() -> None:
    found = sigv4.Credentials.from_environ(
        {"AWS_ACCESS_KEY_ID": "AK", "AWS_SECRET_ACCESS_KEY": "SK", "AWS_SESSION_TOKEN": "T"}
    )
    assert found is not None
    assert (found.access_key, found.secret_key, found.token) == ("AK", "SK", "T")
    assert "SK" not in repr(found)
    assert sigv4.Credentials.from_environ({"AWS_ACCESS_KEY_ID": "AK"}) is None
