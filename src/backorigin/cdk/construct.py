"""``BackToOriginConstruct``: the whole lazy-migration system as one CDK construct."""

from __future__ import annotations

__all__ = ["BackToOriginConstruct", "ConstructConfigError"]

import atexit
import hashlib
import os
import shutil
import tempfile
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any, Literal

import aws_cdk as cdk
from aws_cdk import aws_certificatemanager as acm
from aws_cdk import aws_cloudfront as cloudfront
from aws_cdk import aws_cloudfront_origins as origins
from aws_cdk import aws_cloudwatch as cloudwatch
from aws_cdk import aws_iam as iam
from aws_cdk import aws_kms as kms
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_lambda_event_sources as event_sources
from aws_cdk import aws_logs as logs
from aws_cdk import aws_s3 as s3
from aws_cdk import aws_scheduler as scheduler
from aws_cdk import aws_sqs as sqs
from constructs import Construct, IConstruct
from pydantic import BaseModel

from backorigin.bundling import bundle, deployment_needs, edge_origin
from backorigin.cdk.dashboard import MigrationDashboard, MigrationParts
from backorigin.cdk.edge_logs import edge_log_group
from backorigin.cdk.regions import ORIGIN_SHIELD_REGIONS, nearest_origin_shield_region
from backorigin.cdk.schedule import ScheduledReconciler
from backorigin.config import (
    Config,
    SecretRef,
    SecretSource,
    deployability_problems,
    load_config,
)
from backorigin.errors import BackoriginError
from backorigin.types import (
    AWS_ACCOUNT_ID,
    AWS_PARTITION,
    AWS_REGION,
    AWS_URL_SUFFIX,
    PROVENANCE_HEADERS,
    RESERVED_PREFIX,
    DeploymentNeeds,
    IamStatement,
    OriginSpec,
)

PYTHON_VERSION = "3.12"
EDGE_HANDLER = "backorigin.handlers.lambda_entry.edge"
FETCHER_HANDLER = "backorigin.handlers.lambda_entry.fetcher"
# The fetcher stops starting work this long before its timeout (handlers.fetcher.SAFETY_SECONDS);
# a shorter timeout would leave it no time at all.
MIN_FETCHER_TIMEOUT_SECONDS = 60
# AWS: "set the source queue's visibility timeout to at least six times the timeout that you
# configure on your function", so a batch retried by Lambda is not delivered twice meanwhile.
VISIBILITY_FACTOR = 6
# Uploads and leases a crashed copier left behind are resumed by the next attempt within
# minutes; after a week nothing will resume them, so S3 cleans them up.
STALE_AFTER_DAYS = 7
# CloudFront accepts these ports for custom origins.
_ALLOWED_PORTS = frozenset({80, 443}) | frozenset(range(1024, 65536))


class ConstructConfigError(BackoriginError, ValueError):
    """The construct's props or config cannot be deployed (the message says why)."""


def _default_cache_dir() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "backorigin" / "lambda-deps"


_scratch_dirs: list[str] = []


def _remove_scratch_dirs() -> None:
    for path in _scratch_dirs:
        shutil.rmtree(path, ignore_errors=True)


atexit.register(_remove_scratch_dirs)


def _secret_sources(value: object) -> Iterator[SecretSource]:
    """Every secret reference inside a config model, however deeply nested."""
    if isinstance(value, SecretRef):
        yield value.secret
    elif isinstance(value, BaseModel):
        for name in type(value).model_fields:
            yield from _secret_sources(getattr(value, name))
    elif isinstance(value, dict):
        for item in value.values():
            yield from _secret_sources(item)
    elif isinstance(value, list | tuple):
        for item in value:
            yield from _secret_sources(item)


class BackToOriginConstruct(Construct):
    """S3 + CloudFront + Origin Shield in front of a legacy store, copying objects lazily.

    Creates (or adopts) the S3 bucket; a CloudFront distribution whose origin group tries the
    bucket first and fails over to the legacy origin, both through Origin Shield; the
    Lambda@Edge function (origin-request and origin-response) that routes, signs and enqueues;
    the SQS copy queue with its dead-letter queue; the fetcher Lambda that copies objects into
    the bucket; alarms on the dead-letter queue and fetcher errors; and a response headers
    policy that keeps copies' provenance metadata from viewers. Both Lambda bundles are built
    at synth time, without Docker, with the validated config baked in.

    The stack must have an explicit region (``env=Environment(region=...)``): Lambda@Edge is
    deployed to us-east-1 (``cloudfront.experimental.EdgeFunction`` adds a support stack there
    when the stack is elsewhere), and the copy queue's name and region are baked into it.

    Args:
        scope: The parent construct.
        id: The construct id.
        config: The backorigin config: loaded, as YAML text, or as the path of its YAML
            file (a ``pathlib.Path`` or a one-line string). A relative path is read from the
            working directory, as ``open()`` would: the directory ``cdk`` runs the app in
            (the one holding ``cdk.json``) or ``python app.py`` is started from. To name a
            file beside the app whatever the working directory, pass
            ``Path(__file__).parent / "backorigin.yaml"``.
        bucket: An existing bucket to copy into. Default: a new bucket, named
            ``config.bucket.name`` (or a generated name when the stack's account is known).
            Its name must be known at synth time (``s3.Bucket.from_bucket_name``) unless it
            equals ``config.bucket.name``. An ``s3.Bucket`` of the same stack gets what a
            created bucket gets: the lifecycle rules for stale uploads and copy leases, and
            the bucket policy statements. One of another stack gets the lifecycle rules
            only: a statement naming this distribution there would be a cyclic reference.
            An imported bucket cannot take lifecycle rules, nor (unless
            ``manage_bucket_policy``) policy statements. What is left is named in a warning
            (``backorigin:ImportedResourcesNeedSettings``) for the owner to set; see
            ``bucket_policy_statements`` and ``lifecycle_rules``. Exclusive with
            ``removal_policy``.
        manage_bucket_policy: With an imported ``bucket``: create its bucket policy, holding
            the construct's statements and a deny of plain-HTTP requests. That policy
            *replaces* any policy the bucket has, and deleting the stack deletes it: use it
            only for a bucket whose policy nothing else manages. Default ``False``.
        encryption_key: The KMS key of an SSE-KMS bucket. The key policy lets CloudFront
            (origin access control) decrypt for this distribution only, and the fetcher's
            role may generate data keys and decrypt (multipart uploads need both). With no
            ``bucket``, the created bucket is encrypted with this key (with an S3 Bucket Key,
            which cuts KMS requests). Default: the given bucket's ``encryption_key`` (set by
            ``s3.Bucket(encryption_key=...)`` or ``from_bucket_attributes``), else none
            (SSE-S3). An imported key's policy cannot be changed: the construct warns with
            the statement to add (see ``key_policy_statements``).
        secret_encryption_keys: The customer-managed KMS key of each Secrets Manager secret
            the config references that is not encrypted with ``aws/secretsmanager``, keyed
            by the reference exactly as the config writes it. The roles that read a secret
            (the fetcher's; the edge function's for secrets of origins the edge signs for)
            may ``kms:Decrypt`` with its key, only through Secrets Manager in the secret's
            region. Keys of edge secrets must have an ARN known at synth time
            (``kms.Key.from_key_arn``): the edge function's role lives in us-east-1.
            Default: none.
        expose_provenance: Let viewers see the provenance metadata copies carry
            (``x-amz-meta-backorigin-origin``, ``...-origin-key`` and the others in
            ``backorigin.types.PROVENANCE_HEADERS``). Default ``False``: a response headers
            policy removes them from every viewer response.
        removal_policy: What ``cdk destroy`` does with a created bucket. Default
            ``RemovalPolicy.RETAIN``: migrated data survives the stack (``DESTROY`` deletes
            only an empty bucket). Exclusive with ``bucket``.
        origin_shield_region: Where Origin Shield runs for both origins; best the
            supported region closest to the legacy origin. Default: the stack's region. Must
            be one of ``ORIGIN_SHIELD_REGIONS`` (the error names the nearest one). The queue
            and the fetcher stay in the stack's region either way.
        domain_names: Alternate domain names of the distribution. Default: none (only the
            ``*.cloudfront.net`` name). Requires ``certificate``.
        certificate: An ACM certificate in us-east-1 covering ``domain_names``; viewers
            then need TLS 1.2 or later. Default: none. Requires ``domain_names``.
        price_class: CloudFront price class. Default: ``PriceClass.PRICE_CLASS_ALL``.
        web_acl_id: ARN of a WAFv2 web ACL (scope CLOUDFRONT) to attach. Default: none.
        default_root_object: The object ``/`` serves. Default ``index.html``. Never empty:
            CloudFront may list the bucket (so a missing key is a 404, not a 403), and S3
            answers a request for ``/`` itself with a listing of the bucket.
        access_log_bucket: Bucket for CloudFront standard logs and the created bucket's
            server access logs (it must allow ACLs for CloudFront's log delivery).
            Default: no access logs.
        access_log_prefix: Key prefix of those logs (``cloudfront/`` and ``s3/`` below it).
            Default ``backorigin/``. Requires ``access_log_bucket``.
        fetcher_memory_size: Fetcher memory in MiB. Default: enough for the copy engine's
            buffers, ``copy.part_size x (copy.concurrency + 2)`` plus 256 MiB, at least 512.
        fetcher_timeout: Fetcher timeout, 1 to 15 minutes. Default: 15 minutes. The copy
            queue's visibility timeout is six times this.
        fetcher_max_concurrency: Most concurrent fetchers, which bounds the load on the
            legacy origin (2 to 1000). Default 5.
        fetcher_batch_size: Copy jobs per fetcher invocation (1 to 10). Default 1.
        fetcher_architecture: Fetcher CPU architecture. Default ``Architecture.ARM_64``.
            (Lambda@Edge is always x86_64.)
        max_receive_count: Deliveries of a copy job before it moves to the dead-letter
            queue (1 to 1000). Default 5.
        log_retention: Retention of the fetcher's log group. Default one month.
        alarm_actions: Actions (e.g. an SNS topic action) for both alarms. Default: none.
        dependency_cache_dir: Where the bundles' pip-installed dependencies are kept and
            reused between syntheses. Default ``$XDG_CACHE_HOME/backorigin/lambda-deps``
            (``~/.cache/...``); delete it to pick up newer dependency releases.
        queue_retention: How long a copy job may wait in the copy queue (1 minute to 14
            days). Default 4 days; a prewarm or reconcile of millions of keys enqueues faster
            than the fetchers copy, so size it from docs/SCALE.md (up to 14 days).
        reconcile_schedule: Run ``reconcile`` on this schedule (e.g.
            ``scheduler.ScheduleExpression.rate(Duration.days(1))``): EventBridge Scheduler
            invokes a reconciler function in the stack's region, which lists the origins and
            the bucket and sends copies of missing objects and refreshes of stale ones to the
            copy queue. Default: none.
        reconcile_prefixes: Viewer-key prefixes to reconcile, one schedule (and one
            15-minute invocation) each. Default ``("",)``: every key in one walk; split a key
            space one invocation cannot walk (docs/SCALE.md). Requires ``reconcile_schedule``.
        reconcile_deletes: What the scheduled reconcile does with orphaned copies (their
            origin object is gone): ``"keep"`` (default) or ``"delete"`` (only copies with
            backorigin's provenance, each conditional on its ETag).
        dashboard_name: Name of the CloudWatch dashboard. Default: generated.
        migrated: The end state, once ``backorigin status`` reports the migration complete:
            the bucket (through origin access control) is the distribution's only origin; no
            edge function, failover, copy queue, fetcher or reconciler. The distribution
            (same logical id and domain name) and the bucket stay, so the old store can be
            switched off without rebuilding anything viewers see. Default ``False``.

    Raises:
        ConstructConfigError: Props that cannot go together, an unsupported Origin Shield
            region, a stack without a region, or a config that cannot work when deployed
            (among them what ``backorigin.config.deployability_problems`` finds: settings
            CloudFront would refuse with a 502 at run time, listed by field path).
        ConfigError: The config file is invalid.

    Attributes:
        config: The config as baked into both functions (with the bucket's name).
        bucket: The bucket objects are copied into.
        encryption_key: The bucket's KMS key, if it uses SSE-KMS.
        bucket_policy_statements: What the bucket's policy must hold: CloudFront's read
            and list access for this distribution, and no viewer access to copy leases.
        key_policy_statements: What ``encryption_key``'s policy must hold (CloudFront's
            decrypt for this distribution); empty without a key.
        lifecycle_rules: The lifecycle rules the bucket needs (stale multipart uploads and
            copy leases expire after a week).
        response_headers_policy: The policy removing provenance headers from viewer
            responses; ``None`` with ``expose_provenance``.
        distribution: The CloudFront distribution.
        queue: The SQS copy queue (``None`` with ``migrated``, as are the next three).
        dead_letter_queue: Where copy jobs go after ``max_receive_count`` deliveries.
        fetcher: The fetcher Lambda function.
        edge_function: The Lambda@Edge function.
        alarms: The dead-letter-queue and fetcher-error alarms.
        reconciler: The scheduled reconciler (``function``, ``schedules``), or ``None``.
        edge_log_group: The edge function's log group in the Origin Shield region.
        dashboard: The migration's CloudWatch dashboard.
        origin_shield_region: The Origin Shield region in use.
        queue_name: The copy queue's (deterministic) name, baked into the edge function.
    """

    def __init__(
        self,
        scope: Construct,
        id: str,
        *,
        config: Config | str | os.PathLike[str],
        bucket: s3.IBucket | None = None,
        manage_bucket_policy: bool = False,
        encryption_key: kms.IKey | None = None,
        secret_encryption_keys: Mapping[str, kms.IKey] | None = None,
        expose_provenance: bool = False,
        removal_policy: cdk.RemovalPolicy | None = None,
        origin_shield_region: str | None = None,
        domain_names: Sequence[str] | None = None,
        certificate: acm.ICertificate | None = None,
        price_class: cloudfront.PriceClass | None = None,
        web_acl_id: str | None = None,
        default_root_object: str = "index.html",
        access_log_bucket: s3.IBucket | None = None,
        access_log_prefix: str | None = None,
        fetcher_memory_size: int | None = None,
        fetcher_timeout: cdk.Duration | None = None,
        fetcher_max_concurrency: int = 5,
        fetcher_batch_size: int = 1,
        fetcher_architecture: lambda_.Architecture | None = None,
        max_receive_count: int = 5,
        log_retention: logs.RetentionDays = logs.RetentionDays.ONE_MONTH,
        alarm_actions: Sequence[cloudwatch.IAlarmAction] = (),
        dependency_cache_dir: str | os.PathLike[str] | None = None,
        queue_retention: cdk.Duration | None = None,
        reconcile_schedule: scheduler.ScheduleExpression | None = None,
        reconcile_prefixes: Sequence[str] = ("",),
        reconcile_deletes: Literal["keep", "delete"] = "keep",
        dashboard_name: str | None = None,
        migrated: bool = False,
    ) -> None:
        # Everything that can be wrong is checked before any resource exists.
        stack = cdk.Stack.of(scope)
        region = self._check_region(stack)
        if bucket is not None and removal_policy is not None:
            raise ConstructConfigError(
                "bucket and removal_policy are mutually exclusive: removal_policy applies "
                "only to a bucket the construct creates; an existing bucket keeps its own"
            )
        if manage_bucket_policy and (bucket is None or isinstance(bucket, s3.Bucket)):
            raise ConstructConfigError(
                "manage_bucket_policy applies only to an imported bucket= (e.g. "
                "s3.Bucket.from_bucket_name): the construct already adds its statements to "
                "the policy of a bucket it creates or of an s3.Bucket of the same app"
            )
        if bool(domain_names) != (certificate is not None):
            given, missing = (
                ("domain_names", "certificate") if domain_names else ("certificate", "domain_names")
            )
            raise ConstructConfigError(
                f"domain_names and certificate go together: {given} was given without "
                f"{missing} (CloudFront serves alternate domain names only with a certificate "
                "that covers them)"
            )
        if access_log_prefix is not None and access_log_bucket is None:
            raise ConstructConfigError(
                "access_log_prefix requires access_log_bucket (there are no logs without it)"
            )
        shield = _check_shield_region(origin_shield_region, region)
        if not default_root_object.strip("/"):
            raise ConstructConfigError(
                "default_root_object must name an object: without one, a request for / "
                "would return S3's listing of the bucket"
            )
        timeout = fetcher_timeout or cdk.Duration.minutes(15)
        _check_range(
            "fetcher_timeout (seconds)", timeout.to_seconds(), MIN_FETCHER_TIMEOUT_SECONDS, 900
        )
        _check_range("fetcher_max_concurrency", fetcher_max_concurrency, 2, 1000)
        _check_range("fetcher_batch_size", fetcher_batch_size, 1, 10)
        _check_range("max_receive_count", max_receive_count, 1, 1000)
        retention = queue_retention or cdk.Duration.days(4)
        _check_range("queue_retention (seconds)", retention.to_seconds(), 60, 14 * 86400)
        _check_reconcile(reconcile_schedule, reconcile_prefixes, reconcile_deletes, migrated)
        if fetcher_memory_size is not None:
            _check_range("fetcher_memory_size", fetcher_memory_size, 128, 10240)
        loaded = load_config(_config_file(config) or config)
        _check_deployable(loaded)
        _check_cloudfront_accepts(loaded)
        secret_keys = dict(secret_encryption_keys or {})
        _check_secret_keys(loaded, secret_keys)
        bucket_name = _bucket_name(loaded, bucket, stack, id, region)
        spec = edge_origin(loaded)
        if spec.port not in _ALLOWED_PORTS:
            raise ConstructConfigError(
                f"the legacy origin {spec.domain} uses port {spec.port}; CloudFront reaches "
                "custom origins only on ports 80, 443 and 1024-65535"
            )

        super().__init__(scope, id)
        # Wildcard grants made on purpose: (scope, resource, why), acknowledged for cdk-nag.
        self._wildcards: list[tuple[IConstruct, object, str]] = []
        self.origin_shield_region = shield
        self.config = _with_bucket_name(loaded, bucket_name)
        self.queue_name = (
            cdk.Names.unique_resource_name(self, max_length=75, separator="-") + "-copy"
        )
        cache_dir = Path(dependency_cache_dir) if dependency_cache_dir else _default_cache_dir()
        architecture = fetcher_architecture or lambda_.Architecture.ARM_64

        self.encryption_key = encryption_key or (bucket.encryption_key if bucket else None)
        self.lifecycle_rules = [s3.LifecycleRule(**rule) for rule in self._lifecycle_rule_props()]
        self.bucket = bucket or self._create_bucket(
            bucket_name,
            removal_policy or cdk.RemovalPolicy.RETAIN,
            access_log_bucket,
            access_log_prefix or "backorigin/",
        )
        bucket_region = self.bucket.env.region
        # The bucket by its literal name and region. The distribution's origin always uses it:
        # the bucket's (and its KMS key's) policy name the distribution, so the distribution
        # must not depend on them (_protect_bucket writes those statements itself). Grants
        # use it for a bucket of another stack, which a reference would make a dependency.
        self._bucket_by_name = s3.Bucket.from_bucket_attributes(
            self,
            "OriginBucket",
            bucket_name=bucket_name,
            region=region if cdk.Token.is_unresolved(bucket_region) else bucket_region,
        )
        self._granted_bucket = (
            self.bucket
            if cdk.Stack.of(self.bucket).node.path == stack.node.path
            else self._bucket_by_name
        )

        self.queue: sqs.Queue | None = None
        self.dead_letter_queue: sqs.Queue | None = None
        self.fetcher: lambda_.Function | None = None
        self.edge_function: cloudfront.experimental.EdgeFunction | None = None
        self.reconciler: ScheduledReconciler | None = None
        self.edge_log_group: logs.LogGroup | None = None
        if not migrated:
            self._create_copy_path(
                cache_dir=cache_dir,
                architecture=architecture,
                timeout=timeout,
                memory_size=fetcher_memory_size or _default_memory(self.config),
                log_retention=log_retention,
                retention=retention,
                max_receive_count=max_receive_count,
                batch_size=fetcher_batch_size,
                max_concurrency=fetcher_max_concurrency,
                region=region,
                shield=shield,
                secret_keys=secret_keys,
                reconcile_schedule=reconcile_schedule,
                reconcile_prefixes=reconcile_prefixes,
                reconcile_deletes=reconcile_deletes,
            )

        self.distribution = self._create_distribution(
            spec,
            shield,
            domain_names=domain_names,
            certificate=certificate,
            price_class=price_class,
            web_acl_id=web_acl_id,
            default_root_object=default_root_object.lstrip("/"),
            access_log_bucket=access_log_bucket,
            access_log_prefix=access_log_prefix or "backorigin/",
            expose_provenance=expose_provenance,
        )
        self._protect_bucket(created=bucket is None, manage_policy=manage_bucket_policy)
        self.alarms = self._create_alarms(alarm_actions)
        self.dashboard = MigrationDashboard(
            self,
            "Dashboard",
            parts=MigrationParts(
                distribution=self.distribution,
                shield_region=shield,
                queue=self.queue,
                dead_letter_queue=self.dead_letter_queue,
                fetcher=self.fetcher,
                reconciler=self.reconciler.function if self.reconciler else None,
            ),
            dashboard_name=dashboard_name,
        ).dashboard
        self._acknowledge(
            stack,
            has_waf=web_acl_id is not None,
            has_logs=access_log_bucket is not None,
            has_certificate=certificate is not None,
            created_bucket=bucket is None,
        )

    def _create_copy_path(
        self,
        *,
        cache_dir: Path,
        architecture: lambda_.Architecture,
        timeout: cdk.Duration,
        memory_size: int,
        log_retention: logs.RetentionDays,
        retention: cdk.Duration,
        max_receive_count: int,
        batch_size: int,
        max_concurrency: int,
        region: str,
        shield: str,
        secret_keys: Mapping[str, kms.IKey],
        reconcile_schedule: scheduler.ScheduleExpression | None,
        reconcile_prefixes: Sequence[str],
        reconcile_deletes: Literal["keep", "delete"],
    ) -> None:
        """The queue, the fetcher, the edge function and the reconciler: what a migration
        in progress needs and its end state does not."""
        dead_letter_queue = self.dead_letter_queue = sqs.Queue(
            self,
            "DeadLetterQueue",
            encryption=sqs.QueueEncryption.SQS_MANAGED,
            enforce_ssl=True,
            # Longer than the copy queue's retention, so a job cannot expire on the way.
            retention_period=cdk.Duration.days(14),
        )
        queue = self.queue = sqs.Queue(
            self,
            "CopyQueue",
            queue_name=self.queue_name,
            encryption=sqs.QueueEncryption.SQS_MANAGED,
            enforce_ssl=True,
            visibility_timeout=cdk.Duration.seconds(timeout.to_seconds() * VISIBILITY_FACTOR),
            retention_period=retention,
            dead_letter_queue=sqs.DeadLetterQueue(
                queue=dead_letter_queue, max_receive_count=max_receive_count
            ),
        )

        fetcher = self.fetcher = self._create_fetcher(
            cache_dir, architecture, timeout, memory_size, log_retention
        )
        fetcher.add_event_source(
            event_sources.SqsEventSource(
                queue,
                batch_size=batch_size,
                report_batch_item_failures=True,
                max_concurrency=max_concurrency,
            )
        )

        self.edge_function = self._create_edge_function(cache_dir, region)
        self.edge_log_group = edge_log_group(
            self,
            function_name=self.edge_function_name,
            region=shield,
            retention=log_retention,
        )
        if reconcile_schedule is not None:
            self.reconciler = ScheduledReconciler(
                self,
                "Reconciler",
                code=bundle(
                    self.config,
                    self._scratch_dir("reconciler"),
                    role="fetcher",  # it reads the origins as the fetcher does
                    python=PYTHON_VERSION,
                    arch="arm64" if architecture.name == "arm64" else "x86_64",
                    cache_dir=cache_dir,
                    include=("prewarm",),
                ),
                schedule=reconcile_schedule,
                prefixes=reconcile_prefixes,
                deletes=reconcile_deletes,
                queue=queue,
                bucket=self._granted_bucket,
                bucket_prefix=self.config.bucket.prefix,
                architecture=architecture,
                memory_size=1024,
                log_retention=log_retention,
            )
            self._wildcards += self.reconciler.wildcard_resources
        self._grant_origins(region, secret_keys)

    # --- checks -------------------------------------------------------------------------------

    @staticmethod
    def _check_region(stack: cdk.Stack) -> str:
        region = stack.region
        if cdk.Token.is_unresolved(region):
            raise ConstructConfigError(
                f"stack {stack.stack_name} has no explicit region; give it one "
                "(env=Environment(region=...)): the copy queue's region is baked into the "
                "Lambda@Edge function, which has no environment variables"
            )
        return region

    # --- resources ----------------------------------------------------------------------------

    def _lifecycle_rule_props(self) -> list[dict[str, Any]]:
        """Keyword arguments of ``s3.LifecycleRule`` / ``Bucket.add_lifecycle_rule``."""
        prefix = self.config.bucket.prefix
        return [
            {
                "id": "AbortIncompleteMultipartUploads",
                "abort_incomplete_multipart_upload_after": cdk.Duration.days(STALE_AFTER_DAYS),
            },
            {
                "id": "ExpireStaleCopyLeases",
                "prefix": f"{prefix}{RESERVED_PREFIX}leases/",
                "expiration": cdk.Duration.days(STALE_AFTER_DAYS),
            },
        ]

    def _create_bucket(
        self,
        name: str,
        removal_policy: cdk.RemovalPolicy,
        access_log_bucket: s3.IBucket | None,
        access_log_prefix: str,
    ) -> s3.Bucket:
        key = self.encryption_key
        return s3.Bucket(
            self,
            "Bucket",
            bucket_name=name,
            block_public_access=s3.BlockPublicAccess.BLOCK_ALL,
            enforce_ssl=True,
            minimum_tls_version=1.2,
            encryption=s3.BucketEncryption.KMS if key else s3.BucketEncryption.S3_MANAGED,
            encryption_key=key,
            # An S3 Bucket Key: S3 asks KMS for a data key per bucket and period, not per
            # object, which keeps a migration's millions of writes off the KMS request quota.
            bucket_key_enabled=True if key else None,
            object_ownership=s3.ObjectOwnership.BUCKET_OWNER_ENFORCED,
            removal_policy=removal_policy,
            server_access_logs_bucket=access_log_bucket,
            server_access_logs_prefix=f"{access_log_prefix}s3/" if access_log_bucket else None,
            lifecycle_rules=self.lifecycle_rules,
        )

    def _protect_bucket(self, *, created: bool, manage_policy: bool) -> None:
        """The bucket's policy, lifecycle rules and key policy: applied where CDK can.

        A bucket the construct creates, or an ``s3.Bucket`` of the same app, takes all of
        them. An imported bucket takes no lifecycle rules and no statements (unless
        ``manage_policy``), and an imported key no statements: what is left is listed in a
        warning for the owner to set.
        """
        config = self.config
        prefix = config.bucket.prefix
        bucket = self.bucket
        distribution_arn = cdk.Stack.of(self).format_arn(
            service="cloudfront",
            region="",
            resource="distribution",
            resource_name=self.distribution.distribution_id,
        )
        from_this_distribution = {"StringEquals": {"AWS:SourceArn": distribution_arn}}
        cloudfront_principal = iam.ServicePrincipal("cloudfront.amazonaws.com")
        self.bucket_policy_statements = [
            iam.PolicyStatement(
                sid="CloudFrontReadsObjects",
                principals=[cloudfront_principal],
                actions=["s3:GetObject"],
                resources=[bucket.arn_for_objects(f"{prefix}*")],
                conditions=from_this_distribution,
            ),
            # LIST lets S3 answer 404 for a missing key (instead of 403), so a miss is
            # cached and failed over as what it is.
            iam.PolicyStatement(
                sid="CloudFrontListsBucket",
                principals=[cloudfront_principal],
                actions=["s3:ListBucket"],
                resources=[bucket.bucket_arn],
                conditions=from_this_distribution,
            ),
            # The copy engine's leases live in the same bucket; viewers must never read
            # them. A denied read is a 403, which fails over to the edge function, which
            # refuses the key.
            iam.PolicyStatement(
                sid="NoViewerAccessToCopyLeases",
                effect=iam.Effect.DENY,
                principals=[cloudfront_principal],
                actions=["s3:GetObject"],
                resources=[bucket.arn_for_objects(f"{prefix}{RESERVED_PREFIX}*")],
            ),
        ]
        key = self.encryption_key
        self.key_policy_statements = (
            [
                # CloudFront's OAC reads SSE-KMS objects for this distribution only.
                iam.PolicyStatement(
                    sid="CloudFrontDecryptsObjects",
                    principals=[cloudfront_principal],
                    actions=["kms:Decrypt"],
                    resources=["*"],
                    conditions=from_this_distribution,
                )
            ]
            if key
            else []
        )
        left: list[str] = []
        own_stack = cdk.Stack.of(self).node.path
        # A statement naming this distribution, added to a bucket or key of another stack,
        # would make that stack depend on this one, which already depends on it: a cycle.
        bucket_here = created or cdk.Stack.of(bucket).node.path == own_stack
        if isinstance(bucket, s3.Bucket) and bucket_here:
            for statement in self.bucket_policy_statements:
                bucket.add_to_resource_policy(statement)
        elif manage_policy:
            policy = s3.BucketPolicy(self, "BucketPolicy", bucket=bucket)
            policy.document.add_statements(
                *self.bucket_policy_statements,
                iam.PolicyStatement(
                    sid="DenyPlainHttp",
                    effect=iam.Effect.DENY,
                    principals=[iam.AnyPrincipal()],
                    actions=["s3:*"],
                    resources=[bucket.bucket_arn, bucket.arn_for_objects("*")],
                    conditions={"Bool": {"aws:SecureTransport": "false"}},
                ),
            )
        else:
            alternative = (
                "" if isinstance(bucket, s3.Bucket) else "; or pass manage_bucket_policy=True"
            )
            left.append(
                f"bucket {config.bucket.name}'s policy must allow cloudfront.amazonaws.com "
                f"s3:GetObject on arn:aws:s3:::{config.bucket.name}/{prefix}* and "
                "s3:ListBucket on the bucket, with the condition AWS:SourceArn = this "
                "distribution's ARN, and deny it s3:GetObject on "
                f"{prefix}{RESERVED_PREFIX}* (bucket_policy_statements has them{alternative})"
            )
        if isinstance(bucket, s3.Bucket) and not created:
            for rule in self._lifecycle_rule_props():
                bucket.add_lifecycle_rule(**rule)
        elif not created:
            left.append(
                f"bucket {config.bucket.name}'s lifecycle rules must abort incomplete "
                f"multipart uploads and expire objects under '{prefix}{RESERVED_PREFIX}leases/' "
                f"after {STALE_AFTER_DAYS} days (lifecycle_rules has both; CDK cannot add "
                "lifecycle rules to an imported bucket)"
            )
        if key is not None:
            key_here = cdk.Stack.of(key).node.path == own_stack
            for statement in self.key_policy_statements:
                if not (key_here and key.add_to_resource_policy(statement).statement_added):
                    left.append(
                        f"the policy of KMS key {key.key_arn} must allow "
                        "cloudfront.amazonaws.com kms:Decrypt with the condition "
                        "AWS:SourceArn = this distribution's ARN (key_policy_statements has it)"
                    )
            if self.fetcher is not None:
                fetcher_role = self.fetcher.role
                assert fetcher_role is not None
                # Multipart uploads to an SSE-KMS bucket need both: a data key per part, and
                # Decrypt to complete the upload (and to read leases and existing objects).
                key.grant(fetcher_role, "kms:GenerateDataKey", "kms:Decrypt")
            if self.reconciler is not None:
                key.grant(self.reconciler.role, "kms:Decrypt")  # HEADs of SSE-KMS copies
        if left:
            cdk.Annotations.of(self).add_warning_v2(
                "backorigin:ImportedResourcesNeedSettings",
                "the construct cannot change imported resources, nor add statements naming "
                "its distribution to another stack's (that would be a cyclic reference); "
                "their owner must set what lets CloudFront read the bucket and protects "
                "copies in progress: " + "; ".join(left) + ".",
            )

    def _scratch_dir(self, role: str) -> Path:
        path = tempfile.mkdtemp(prefix=f"backorigin-{role}-")
        # With asset staging off (SAM, `cdk synth --no-staging`) the template points at this
        # directory itself, so it must outlive the process.
        if not self.node.try_get_context("aws:cdk:disableAssetStaging"):
            _scratch_dirs.append(path)
        return Path(path)

    def _create_fetcher(
        self,
        cache_dir: Path,
        architecture: lambda_.Architecture,
        timeout: cdk.Duration,
        memory_size: int,
        log_retention: logs.RetentionDays,
    ) -> lambda_.Function:
        code = bundle(
            self.config,
            self._scratch_dir("fetcher"),
            role="fetcher",
            python=PYTHON_VERSION,
            arch="arm64" if architecture.name == "arm64" else "x86_64",
            cache_dir=cache_dir,
        )
        log_group = logs.LogGroup(
            self,
            "FetcherLogs",
            retention=log_retention,
            removal_policy=cdk.RemovalPolicy.DESTROY,
        )
        # An explicit role instead of the default one: the managed basic-execution policy
        # would allow writing to every log group in the account.
        role = iam.Role(
            self,
            "FetcherRole",
            assumed_by=iam.ServicePrincipal("lambda.amazonaws.com"),
            description="backorigin fetcher: copies objects from the legacy origins into S3",
        )
        role.add_to_policy(
            iam.PolicyStatement(
                actions=["logs:CreateLogStream", "logs:PutLogEvents"],
                resources=[log_group.log_group_arn],
            )
        )
        fetcher = lambda_.Function(
            self,
            "Fetcher",
            description="backorigin fetcher: copies objects from the legacy origins into S3",
            code=lambda_.Code.from_asset(str(code)),
            handler=FETCHER_HANDLER,
            runtime=lambda_.Runtime.PYTHON_3_12,
            architecture=architecture,
            memory_size=memory_size,
            timeout=timeout,
            role=role,
            log_group=log_group,
        )
        self._grant_bucket(role)
        return fetcher

    def _grant_bucket(self, role: iam.Role) -> None:
        """Exactly what the copy engine does to the bucket, and no more."""
        prefix = self.config.bucket.prefix
        bucket = self._granted_bucket
        objects = bucket.arn_for_objects(f"{prefix}*")
        leases = bucket.arn_for_objects(f"{prefix}{RESERVED_PREFIX}*")
        self._wildcards += [
            (role, objects, "the fetcher writes objects whose keys are known only at run time"),
            (role, leases, "copy leases are named by a digest of the key they protect"),
        ]
        role.add_to_principal_policy(
            iam.PolicyStatement(
                sid="CopyObjects",
                actions=[
                    "s3:GetObject",  # HEAD before copying, reading leases
                    "s3:PutObject",  # create-only writes, multipart parts, leases
                    "s3:AbortMultipartUpload",
                    "s3:ListMultipartUploadParts",  # resuming an interrupted upload
                ],
                resources=[objects],
            )
        )
        role.add_to_principal_policy(
            iam.PolicyStatement(
                sid="ReleaseCopyLeases",
                actions=["s3:DeleteObject"],
                resources=[leases],
            )
        )
        role.add_to_principal_policy(
            iam.PolicyStatement(
                sid="ListBucket",
                # ListBucket makes a missing key a 404 rather than a 403.
                actions=["s3:ListBucket", "s3:ListBucketMultipartUploads"],
                resources=[bucket.bucket_arn],
            )
        )

    def _create_edge_function(
        self, cache_dir: Path, region: str
    ) -> cloudfront.experimental.EdgeFunction:
        code = bundle(
            self.config,
            self._scratch_dir("edge"),
            role="edge",
            python=PYTHON_VERSION,
            arch="x86_64",
            queue_name=self.queue_name,
            queue_region=region,
            cache_dir=cache_dir,
        )
        # A name known at synth time: the function's log group in the Origin Shield region is
        # named after it, in another stack. The region keeps the same stack deployed to two
        # regions of one account from sharing a name in us-east-1.
        suffix = f"-{region}-edge"
        self.edge_function_name = (
            cdk.Names.unique_resource_name(self, max_length=64 - len(suffix), separator="-")
            + suffix
        )
        edge = cloudfront.experimental.EdgeFunction(
            self,
            # EdgeFunction reuses this id in the shared us-east-1 stack, so it must be unique
            # there too (two constructs in one stack would clash on a plain "EdgeFunction").
            f"EdgeFunction{cdk.Names.unique_id(self)[-8:]}",
            description="backorigin edge: routes, signs and enqueues copies of legacy objects",
            function_name=self.edge_function_name,
            code=lambda_.Code.from_asset(str(code)),
            handler=EDGE_HANDLER,
            runtime=lambda_.Runtime.PYTHON_3_12,
            architecture=lambda_.Architecture.X86_64,
            memory_size=256,
            # Origin-facing Lambda@Edge may run up to 30 s; signing may need one token call.
            timeout=cdk.Duration.seconds(15),
        )
        # The function lives in us-east-1 (a support stack when this one is elsewhere), so
        # the queue is named by its deterministic ARN rather than a cross-region reference.
        edge.add_to_role_policy(
            iam.PolicyStatement(
                sid="EnqueueCopies",
                actions=["sqs:SendMessage"],
                resources=[
                    cdk.Stack.of(self).format_arn(
                        service="sqs",
                        region=region,
                        resource=self.queue_name,
                        arn_format=cdk.ArnFormat.NO_RESOURCE_NAME,
                    )
                ],
            )
        )
        return edge

    def _grant_origins(self, region: str, secret_keys: Mapping[str, kms.IKey]) -> None:
        """Each origin grants the functions exactly what reading it needs.

        Its secrets, found in its config; and the statements its adapter declares for each
        function (the edge function's only for origins CloudFront reaches through it).
        """
        config = self.config
        assert self.fetcher is not None
        assert self.edge_function is not None
        fetcher_role = self.fetcher.role
        edge_role = self.edge_function.lambda_.role
        assert isinstance(fetcher_role, iam.Role)
        assert edge_role is not None
        # The reconciler lists and reads the origins as the fetcher does.
        readers: list[iam.IRole] = [fetcher_role]
        if self.reconciler is not None:
            readers.append(self.reconciler.role)
        # The edge's needs list only the origins CloudFront reaches through it.
        fetcher_declared = deployment_needs(config, "fetcher")
        edge_declared = deployment_needs(config, "edge")
        for origin in config.origins:
            fetcher_needs = fetcher_declared[origin.name]
            edge_needs = edge_declared.get(origin.name)
            for reader in readers:
                self._grant_declared(reader, fetcher_needs)
            if edge_needs is not None:
                self._grant_declared(edge_role, edge_needs)
            for source in _secret_sources(origin):
                secret = source.aws_secretsmanager
                assert secret is not None  # _check_deployable refused every other kind
                key = secret_keys.get(secret)
                if fetcher_needs.reads_secrets:
                    for reader in readers:
                        # The fetcher resolves a name in its own region.
                        reader.add_to_principal_policy(_read_secret(self, secret, region))
                        if key is not None:
                            reader.add_to_principal_policy(_decrypt_secret(key, secret, region))
                if edge_needs is None or not edge_needs.reads_secrets:
                    continue
                # Lambda@Edge resolves a name in whichever region it runs in.
                statement = _read_secret(self, secret, "*")
                self.edge_function.add_to_role_policy(statement)
                if key is not None:
                    self.edge_function.add_to_role_policy(_decrypt_secret(key, secret, "*"))
                if not secret.startswith("arn:"):
                    cdk.Annotations.of(self).add_warning_v2(
                        "backorigin:SecretByName",
                        f"origin {origin.name!r} names its secret {secret!r} without an ARN: "
                        "Lambda@Edge looks it up in whichever region it runs in, where it "
                        "may not exist; reference it by ARN.",
                    )
                    self._wildcards.append(
                        (
                            edge_role,
                            statement.resources[0],
                            "a secret named without an ARN is read in whichever region "
                            "Lambda@Edge runs in; only that one secret name is granted",
                        )
                    )

    def _grant_declared(self, role: iam.IRole, needs: DeploymentNeeds) -> None:
        """Grant ``role`` the statements an origin's adapter declares for it."""
        for declared in needs.statements:
            statement = _policy_statement(declared)
            role.add_to_principal_policy(statement)
            if declared.wildcard_reason is None:
                continue  # cdk-nag's finding on a wildcard stays for the owner to judge
            for resource in statement.resources:
                if resource.endswith("*"):
                    self._wildcards.append((role, resource, declared.wildcard_reason))

    def _create_distribution(
        self,
        spec: OriginSpec,
        shield: str,
        *,
        domain_names: Sequence[str] | None,
        certificate: acm.ICertificate | None,
        price_class: cloudfront.PriceClass | None,
        web_acl_id: str | None,
        default_root_object: str,
        access_log_bucket: s3.IBucket | None,
        access_log_prefix: str,
        expose_provenance: bool,
    ) -> cloudfront.Distribution:
        config = self.config
        prefix = config.bucket.prefix.rstrip("/")
        primary = origins.S3BucketOrigin.with_origin_access_control(
            self._bucket_by_name,
            # LIST lets S3 answer 404 for a missing key (instead of 403), so a miss is cached
            # and failed over as what it is.
            origin_access_levels=[cloudfront.AccessLevel.READ, cloudfront.AccessLevel.LIST],
            origin_path=f"/{prefix}" if prefix else None,
            origin_shield_enabled=True,
            origin_shield_region=shield,
        )
        https = spec.protocol == "https"
        legacy = origins.HttpOrigin(
            spec.domain,
            origin_path=spec.path or None,
            protocol_policy=cloudfront.OriginProtocolPolicy.HTTPS_ONLY
            if https
            else cloudfront.OriginProtocolPolicy.HTTP_ONLY,
            https_port=spec.port if https else None,
            http_port=None if https else spec.port,
            origin_ssl_protocols=[cloudfront.OriginSslPolicy.TLS_V1_2],
            origin_shield_enabled=True,
            origin_shield_region=shield,
        )
        forward = config.edge.forward_query
        cache_policy = cloudfront.CachePolicy(
            self,
            "CachePolicy",
            comment="backorigin: path plus the query parameters edge.forward_query names",
            min_ttl=cdk.Duration.seconds(0),
            default_ttl=cdk.Duration.days(1),
            max_ttl=cdk.Duration.days(365),
            query_string_behavior=cloudfront.CacheQueryStringBehavior.allow_list(*forward)
            if forward
            else cloudfront.CacheQueryStringBehavior.none(),
            header_behavior=cloudfront.CacheHeaderBehavior.none(),
            cookie_behavior=cloudfront.CacheCookieBehavior.none(),
            enable_accept_encoding_gzip=True,
            enable_accept_encoding_brotli=True,
        )
        # Nothing beyond the cache key reaches an origin: no viewer cookies or headers.
        # Policy names are unique per account, so the name carries the region as well as the
        # construct's path (the CDK's default for cache policies, not for this one).
        request_policy = cloudfront.OriginRequestPolicy(
            self,
            "OriginRequestPolicy",
            origin_request_policy_name=(
                f"{cdk.Names.unique_id(self)[:90]}-OriginRequest-{cdk.Stack.of(self).region}"
            ),
            comment="backorigin: forward nothing beyond the cache key",
            query_string_behavior=cloudfront.OriginRequestQueryStringBehavior.none(),
            header_behavior=cloudfront.OriginRequestHeaderBehavior.none(),
            cookie_behavior=cloudfront.OriginRequestCookieBehavior.none(),
        )
        # CloudFront removes headers by exact name, so every provenance field is listed.
        self.response_headers_policy = (
            None
            if expose_provenance
            else cloudfront.ResponseHeadersPolicy(
                self,
                "ResponseHeadersPolicy",
                response_headers_policy_name=(
                    f"{cdk.Names.unique_id(self)[:90]}-ResponseHeaders-{cdk.Stack.of(self).region}"
                ),
                comment="backorigin: viewers do not see where copies came from",
                remove_headers=list(PROVENANCE_HEADERS),
            )
        )
        edge = self.edge_function
        # The end state: the bucket alone, no failover and no edge function. The same
        # Distribution construct, so CloudFront updates the distribution in place.
        origin: cloudfront.IOrigin = (
            primary
            if edge is None
            else origins.OriginGroup(
                primary_origin=primary,
                fallback_origin=legacy,
                fallback_status_codes=list(config.edge.failover_status),
            )
        )
        edge_lambdas = (
            None
            if edge is None
            else [
                cloudfront.EdgeLambda(function_version=edge.current_version, event_type=kind)
                for kind in (
                    cloudfront.LambdaEdgeEventType.ORIGIN_REQUEST,
                    cloudfront.LambdaEdgeEventType.ORIGIN_RESPONSE,
                )
            ]
        )
        distribution = cloudfront.Distribution(
            self,
            "Distribution",
            comment=f"backorigin: {cdk.Stack.of(self).stack_name}"[:128],
            default_behavior=cloudfront.BehaviorOptions(
                origin=origin,
                viewer_protocol_policy=cloudfront.ViewerProtocolPolicy.REDIRECT_TO_HTTPS,
                allowed_methods=cloudfront.AllowedMethods.ALLOW_GET_HEAD,
                cached_methods=cloudfront.CachedMethods.CACHE_GET_HEAD,
                cache_policy=cache_policy,
                origin_request_policy=request_policy,
                response_headers_policy=self.response_headers_policy,
                compress=True,
                edge_lambdas=edge_lambdas,
            ),
            domain_names=list(domain_names) if domain_names else None,
            certificate=certificate,
            minimum_protocol_version=cloudfront.SecurityPolicyProtocol.TLS_V1_2_2021
            if certificate
            else None,
            price_class=price_class,
            web_acl_id=web_acl_id,
            default_root_object=default_root_object,
            enable_logging=access_log_bucket is not None,
            log_bucket=access_log_bucket,
            log_file_prefix=f"{access_log_prefix}cloudfront/" if access_log_bucket else None,
            http_version=cloudfront.HttpVersion.HTTP2_AND_3,
            # A 404 (from S3 after failover, or from the legacy origin) is cached for
            # edge.negative_ttl, like the edge function's own 404s.
            error_responses=[
                cloudfront.ErrorResponse(
                    http_status=404,
                    ttl=cdk.Duration.seconds(int(config.edge.negative_ttl)),
                )
            ],
        )
        # The origin's bucket is a reference by name (see above), so CDK warns that it cannot
        # grant CloudFront access; _protect_bucket does, or warns in its own words.
        cdk.Annotations.of(distribution).acknowledge_warning(
            "@aws-cdk/aws-cloudfront-origins:updateImportedBucketPolicyOac",
            "the construct writes the origin access control statements itself",
        )
        cdk.Annotations.of(distribution).acknowledge_warning(
            "@aws-cdk/aws-cloudfront-origins:listBucketSecurityRisk",
            "default_root_object is never empty, so / never lists the bucket",
        )
        return distribution

    def _create_alarms(self, actions: Sequence[cloudwatch.IAlarmAction]) -> list[cloudwatch.Alarm]:
        if self.dead_letter_queue is None or self.fetcher is None:
            return []  # migrated: nothing is copied any more
        period = cdk.Duration.minutes(5)
        dead_letters = cloudwatch.Alarm(
            self,
            "DeadLetterAlarm",
            alarm_description="backorigin: copy jobs gave up after every retry (see the DLQ)",
            metric=self.dead_letter_queue.metric_approximate_number_of_messages_visible(
                period=period, statistic="Maximum"
            ),
            threshold=1,
            evaluation_periods=1,
            comparison_operator=cloudwatch.ComparisonOperator.GREATER_THAN_OR_EQUAL_TO_THRESHOLD,
            treat_missing_data=cloudwatch.TreatMissingData.NOT_BREACHING,
        )
        errors = cloudwatch.Alarm(
            self,
            "FetcherErrorAlarm",
            alarm_description="backorigin: the fetcher crashed or timed out",
            metric=self.fetcher.metric_errors(period=period, statistic="Sum"),
            threshold=1,
            evaluation_periods=1,
            comparison_operator=cloudwatch.ComparisonOperator.GREATER_THAN_OR_EQUAL_TO_THRESHOLD,
            treat_missing_data=cloudwatch.TreatMissingData.NOT_BREACHING,
        )
        for alarm in (dead_letters, errors):
            for action in actions:
                alarm.add_alarm_action(action)
        return [dead_letters, errors]

    def _acknowledge(
        self,
        stack: cdk.Stack,
        *,
        has_waf: bool,
        has_logs: bool,
        has_certificate: bool,
        created_bucket: bool,
    ) -> None:
        """cdk-nag AwsSolutions findings that are deliberate, each with its reason.

        Acknowledgments go through the CDK's own ``Validations`` API (cdk-nag 3.x reads
        them); nothing here depends on cdk-nag being installed.
        """
        runtime = (
            "the bundles' compiled dependencies (pydantic-core, ...) are installed for Python "
            f"{PYTHON_VERSION}, a supported runtime that Lambda@Edge runs; a newer runtime is "
            "a deliberate upgrade of the bundle and the runtime together"
        )
        if self.fetcher is not None:
            _ack(self.fetcher, "AwsSolutions-L1", runtime)
        if self.reconciler is not None:
            _ack(self.reconciler.function, "AwsSolutions-L1", runtime)
        if self.edge_function is not None:
            edge_lambda = self.edge_function.lambda_
            edge_role = edge_lambda.role
            assert edge_role is not None
            _ack(edge_lambda, "AwsSolutions-L1", runtime)
            _ack(
                edge_role,
                "AwsSolutions-IAM4[Policy::arn:<AWS::Partition>:iam::aws:policy/service-role/"
                "AWSLambdaBasicExecutionRole]",
                "Lambda@Edge writes its logs to /aws/lambda/us-east-1.NAME in every region it "
                "runs in, which is what this logs-only policy (attached by EdgeFunction) allows",
            )
        _ack(
            self.distribution,
            "AwsSolutions-CFR1",
            "a migration keeps serving the audience the legacy store served; geo "
            "restrictions are the owner's business decision, not the construct's",
        )
        if not has_waf:
            _ack(
                self.distribution,
                "AwsSolutions-CFR2",
                "no web_acl_id was given; a WAF web ACL is a cost and policy choice of the "
                "owner (pass web_acl_id= to attach one)",
            )
        if not has_logs:
            _ack(
                self.distribution,
                "AwsSolutions-CFR3",
                "access logging is opt-in (pass access_log_bucket=); it needs a bucket that "
                "accepts ACL-based log delivery, which the construct does not impose",
            )
            if created_bucket:
                _ack(
                    self.bucket,
                    "AwsSolutions-S1",
                    "server access logging is opt-in (pass access_log_bucket=)",
                )
        if not has_certificate:
            _ack(
                self.distribution,
                "AwsSolutions-CFR4",
                "without domain_names and a certificate the distribution uses the default "
                "*.cloudfront.net certificate, whose security policy CloudFront fixes at "
                "TLSv1; with a certificate the construct requires TLS 1.2",
            )
        for scope, resource, reason in self._wildcards:
            text = _nag_text(stack.resolve(resource))
            _ack(scope, f"AwsSolutions-IAM5[Resource::{text}]", reason)


# --- helpers ----------------------------------------------------------------------------------


def _ack(scope: IConstruct, rule: str, reason: str) -> None:
    cdk.Validations.of(scope).acknowledge(
        cdk.Acknowledgment(id=f"AwsSolutions::{rule}", reason=reason)
    )


def _nag_text(value: object) -> str:
    """A resolved value written the way cdk-nag names it in a finding id."""
    if isinstance(value, str):
        return value
    if isinstance(value, dict) and len(value) == 1:
        ((kind, argument),) = value.items()
        if kind == "Fn::Join":
            separator, parts = argument
            return str(separator).join(_nag_text(part) for part in parts)
        if kind == "Fn::GetAtt":
            return f"<{'.'.join(argument)}>"
        if kind == "Ref":
            return f"<{argument}>"
        if kind == "Fn::ImportValue":  # a bucket of another stack of the app
            return _nag_text(argument)
    return str(value)


def _check_reconcile(
    schedule: scheduler.ScheduleExpression | None,
    prefixes: Sequence[str],
    deletes: str,
    migrated: bool,
) -> None:
    if deletes not in ("keep", "delete"):
        raise ConstructConfigError(f'reconcile_deletes must be "keep" or "delete", not {deletes!r}')
    if isinstance(prefixes, str):
        raise ConstructConfigError("reconcile_prefixes is a sequence of prefixes, not one string")
    if not prefixes or len(set(prefixes)) != len(prefixes):
        raise ConstructConfigError("reconcile_prefixes must name at least one prefix, each once")
    if schedule is None and (tuple(prefixes) != ("",) or deletes != "keep"):
        raise ConstructConfigError(
            "reconcile_prefixes and reconcile_deletes require reconcile_schedule (they say "
            "what the scheduled reconcile does)"
        )
    if schedule is not None and migrated:
        raise ConstructConfigError(
            "reconcile_schedule and migrated are mutually exclusive: after the cut-over "
            "there is no old store to reconcile with"
        )


def _check_range(name: str, value: float, low: float, high: float) -> None:
    if not low <= value <= high:
        raise ConstructConfigError(f"{name} must be between {low} and {high}, not {value}")


def _check_shield_region(requested: str | None, stack_region: str) -> str:
    region = requested or stack_region
    if region in ORIGIN_SHIELD_REGIONS:
        return region
    supported = ", ".join(sorted(ORIGIN_SHIELD_REGIONS))
    nearest = nearest_origin_shield_region(region)
    hint = f"; the nearest one to {region} is {nearest}" if nearest else ""
    what = (
        f"origin_shield_region {region!r}"
        if requested
        else f"the stack's region {region!r} (the default origin_shield_region)"
    )
    raise ConstructConfigError(
        f"{what} is not a region CloudFront Origin Shield supports (supported: {supported})"
        f"{hint}; pass origin_shield_region= one of them"
    )


def _config_file(config: Config | str | os.PathLike[str]) -> Path | None:
    """The absolute path ``config`` names, if it names one; refused when there is no file.

    A relative path is resolved against the working directory, like any path a program is
    given. The error names the absolute path and that directory: an app started from
    another directory than the user thinks is the usual cause.
    """
    if isinstance(config, Config):
        return None
    if isinstance(config, str) and ("\n" in config or config.lstrip().startswith("{")):
        return None  # YAML text, as load_config tells them apart
    given = Path(config).expanduser()
    path = given.absolute()
    if path.is_file():
        return path
    cwd = Path.cwd()
    where = "" if given.is_absolute() else f" (a relative path is read from {cwd})"
    problem = "is a directory" if path.is_dir() else "does not exist"
    raise ConstructConfigError(
        f"config file {path} {problem}{where}; to name a file beside app.py whatever the "
        'working directory, pass config=Path(__file__).parent / "backorigin.yaml"'
    )


def _check_deployable(config: Config) -> None:
    """Config choices that validate but cannot work inside the deployed Lambda functions."""
    if config.bucket.endpoint_url is not None:
        raise ConstructConfigError(
            "bucket.endpoint_url is set, but the construct serves the bucket through "
            "CloudFront from Amazon S3; remove endpoint_url"
        )
    prefix = config.bucket.prefix
    if prefix and not prefix.endswith("/"):
        raise ConstructConfigError(
            f"bucket.prefix {prefix!r} must end with '/': CloudFront's origin path for the "
            "bucket is a directory"
        )
    for origin in config.origins:
        for source in _secret_sources(origin):
            if source.aws_secretsmanager is None:
                raise ConstructConfigError(
                    f"origin {origin.name!r} reads a secret from the {source.describe()}, "
                    "which does not exist in the deployed functions (Lambda@Edge has no "
                    "environment variables or files of yours); store it in AWS Secrets "
                    "Manager and reference it as {secret: {aws_secretsmanager: ARN}}"
                )


def _check_cloudfront_accepts(config: Config) -> None:
    """Settings CloudFront would refuse only at run time (with a 502), refused before deploy."""
    problems = deployability_problems(config)
    if problems:
        listed = "\n".join(f"  {problem}" for problem in problems)
        raise ConstructConfigError(
            f"the config cannot be deployed: CloudFront would refuse "
            f"{len(problems)} setting(s) of origins it reaches through the edge function "
            f"(a route's fallback origins are exempt: only the fetcher reads them):\n{listed}"
        )


def _bucket_name(
    config: Config, bucket: s3.IBucket | None, stack: cdk.Stack, id: str, region: str
) -> str:
    """The bucket's name, which the fetcher needs at synth time (it is baked in)."""
    wanted = config.bucket.name
    if bucket is not None:
        name = bucket.bucket_name
        if not cdk.Token.is_unresolved(name):
            if wanted is not None and wanted != name:
                raise ConstructConfigError(
                    f"bucket is {name!r} but the config's bucket.name is {wanted!r}; "
                    "make them the same or remove bucket.name"
                )
            return name
        if wanted is None:
            raise ConstructConfigError(
                "the name of the given bucket is not known at synth time; set bucket.name "
                "in the config, or import the bucket with s3.Bucket.from_bucket_name()"
            )
        return wanted
    if config.bucket.region is not None and config.bucket.region != region:
        raise ConstructConfigError(
            f"the config's bucket.region is {config.bucket.region} but the bucket would be "
            f"created in the stack's region {region}; deploy the stack there or remove "
            "bucket.region"
        )
    if wanted is not None:
        return wanted
    account = stack.account
    if cdk.Token.is_unresolved(account):
        raise ConstructConfigError(
            "bucket.name is not set in the config and the stack's account is not known at "
            "synth time, so no bucket name can be chosen; set bucket.name, pass bucket=, or "
            "give the stack an explicit account"
        )
    digest = hashlib.sha256(f"{stack.stack_name}/{id}".encode()).hexdigest()[:8]
    return f"backorigin-{digest}-{account}-{region}"


def _with_bucket_name(config: Config, name: str) -> Config:
    if config.bucket.name == name:
        return config
    data = config.model_dump(mode="json", by_alias=True)
    data["bucket"]["name"] = name
    return load_config(data)


def _default_memory(config: Config) -> int:
    mib = 1024 * 1024
    # The copy engine's buffer pool holds concurrency + 2 parts (one being hashed in order and
    # one being filled while the others are in flight).
    buffers = config.transfer.part_size * (config.transfer.concurrency + 2)
    needed = -(-buffers // mib) + 256
    return int(min(10240, max(512, -(-needed // 64) * 64)))


def _read_secret(scope: Construct, secret: str, region: str) -> iam.PolicyStatement:
    """GetSecretValue on one secret, by ARN or by name (with Secrets Manager's suffix)."""
    if secret.startswith("arn:"):
        # A partial ARN (no random suffix) needs the suffix wildcard; a complete one matches.
        resources = [secret, f"{secret}-??????"]
    else:
        resources = [
            cdk.Stack.of(scope).format_arn(
                service="secretsmanager",
                region=region,
                resource="secret",
                resource_name=f"{secret}-??????",
                arn_format=cdk.ArnFormat.COLON_RESOURCE_NAME,
            )
        ]
    return iam.PolicyStatement(actions=["secretsmanager:GetSecretValue"], resources=resources)


def _decrypt_secret(key: kms.IKey, secret: str, region: str) -> iam.PolicyStatement:
    """Decrypt with a secret's customer-managed key, only as Secrets Manager does it.

    Secrets Manager decrypts with the caller's own permissions; ``kms:ViaService`` limits
    this grant to those calls, in the secret's region (or any, for a secret named without
    an ARN that Lambda@Edge reads wherever it runs).
    """
    if secret.startswith("arn:"):
        region = secret.split(":")[3]
    via = f"secretsmanager.{region}.amazonaws.com"
    return iam.PolicyStatement(
        actions=["kms:Decrypt"],
        resources=[key.key_arn],
        conditions={("StringLike" if region == "*" else "StringEquals"): {"kms:ViaService": via}},
    )


def _check_secret_keys(config: Config, keys: Mapping[str, kms.IKey]) -> None:
    """Every key names a secret of the config, and edge secrets' keys are known by ARN."""
    referenced = {
        source.aws_secretsmanager: origin.name
        for origin in config.origins
        for source in _secret_sources(origin)
        if source.aws_secretsmanager is not None
    }
    unknown = sorted(set(keys) - set(referenced))
    if unknown:
        known = ", ".join(sorted(referenced)) or "none"
        raise ConstructConfigError(
            f"secret_encryption_keys names {', '.join(unknown)}, which the config does not "
            f"reference; its Secrets Manager references are: {known} (write them exactly "
            "as the config does)"
        )
    edge_names = config.edge_origin_roles().keys()
    for secret, key in keys.items():
        if referenced[secret] not in edge_names or not cdk.Token.is_unresolved(key.key_arn):
            continue
        if cdk.Stack.of(key).region != "us-east-1":
            raise ConstructConfigError(
                f"the key of secret {secret} is read by the Lambda@Edge function, whose role "
                "is in us-east-1, so its ARN must be known at synth time: pass "
                "kms.Key.from_key_arn(...) rather than a key of a stack in another region"
            )


# CloudFormation pseudo parameters an IamStatement may use, and the tokens that stand for
# them in the stack of the role that receives the statement.
_PSEUDO_PARAMETERS = {
    AWS_PARTITION: cdk.Aws.PARTITION,
    AWS_REGION: cdk.Aws.REGION,
    AWS_ACCOUNT_ID: cdk.Aws.ACCOUNT_ID,
    AWS_URL_SUFFIX: cdk.Aws.URL_SUFFIX,
}


def _policy_statement(declared: IamStatement) -> iam.PolicyStatement:
    """An adapter's declared statement as a CDK policy statement."""

    def substituted(text: str) -> str:
        for placeholder, token in _PSEUDO_PARAMETERS.items():
            text = text.replace(placeholder, token)
        return text

    conditions: dict[str, Any] = {
        operator: {
            key: substituted(value) if isinstance(value, str) else [substituted(v) for v in value]
            for key, value in keys.items()
        }
        for operator, keys in declared.conditions.items()
    }
    return iam.PolicyStatement(
        actions=list(declared.actions),
        resources=[substituted(resource) for resource in declared.resources],
        conditions=conditions or None,
    )
