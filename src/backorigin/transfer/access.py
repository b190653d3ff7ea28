"""One check that the bucket can be used, made before a run's first key.

Without it, missing credentials or a misspelt bucket surface as one failure per key: a
prewarm of a million keys would print a million copies of the same mistake. A HeadBucket call
proves the credentials, the endpoint and the bucket at once.
"""

from __future__ import annotations

__all__ = ["BucketUnusable", "Problem", "check_bucket_access"]

import enum
from typing import Any

from botocore.exceptions import (
    BotoCoreError,
    ClientError,
    EndpointConnectionError,
    NoCredentialsError,
)

from backorigin.transfer.bucket import BucketError


class Problem(enum.Enum):
    """Why a bucket cannot be used."""

    NO_CREDENTIALS = "no_credentials"
    UNREACHABLE = "unreachable"
    NO_SUCH_BUCKET = "no_such_bucket"
    ACCESS_DENIED = "access_denied"
    OTHER = "other"


class BucketUnusable(BucketError):
    """The bucket cannot be used: no credentials, no answer, no such bucket, access denied.

    The message is meant for the user as it is:
    ``cannot use bucket NAME at ENDPOINT: what is wrong (what to do)``.

    Attributes:
        bucket: The bucket's name.
        endpoint: The endpoint the client sends requests to.
        problem: What is wrong, for callers that add advice of their own.
        detail: The sentence after the colon.
    """

    def __init__(self, bucket: str, endpoint: str, problem: Problem, detail: str) -> None:
        super().__init__(f"cannot use bucket {bucket} at {endpoint}: {detail}")
        self.bucket = bucket
        self.endpoint = endpoint
        self.problem = problem
        self.detail = detail


def check_bucket_access(s3_client: Any, bucket: str) -> None:
    """Make one HeadBucket call; raise a clear error when the bucket cannot be used.

    HeadBucket needs ``s3:ListBucket``, which the copy engine needs anyway: without it S3
    answers a HEAD of a missing object with 403 instead of 404, and a missing object cannot
    be told from a forbidden one.

    Args:
        s3_client: The boto3 S3 client the run will use.
        bucket: The bucket's name.

    Raises:
        BucketUnusable: No credentials were found, the endpoint does not answer, the bucket
            does not exist, or the credentials are refused (wrong, or without access).
    """
    endpoint = str(s3_client.meta.endpoint_url)
    try:
        s3_client.head_bucket(Bucket=bucket)
    except NoCredentialsError:
        problem = Problem.NO_CREDENTIALS
        detail = (
            "no AWS credentials were found (set AWS_PROFILE, or AWS_ACCESS_KEY_ID and "
            "AWS_SECRET_ACCESS_KEY)"
        )
    except EndpointConnectionError:
        problem = Problem.UNREACHABLE
        detail = "S3 does not answer there (is the endpoint right, and the server running?)"
    except ClientError as exc:
        status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
        if status == 404:
            problem, detail = Problem.NO_SUCH_BUCKET, "the bucket does not exist"
        elif status in (401, 403):
            problem = Problem.ACCESS_DENIED
            detail = (
                f"access is denied (HTTP {status}): the credentials are wrong, or lack "
                "s3:ListBucket on the bucket (needed to tell a missing object from a forbidden one)"
            )
        else:
            problem, detail = Problem.OTHER, f"HeadBucket failed: {exc}"
    except BotoCoreError as exc:
        problem, detail = Problem.OTHER, str(exc)
    else:
        return
    raise BucketUnusable(bucket, endpoint, problem, detail)
