"""boto3 clients built once per container, every one with bounded timeouts and retries.

Endpoints are never chosen here: botocore reads the standard
AWS_ENDPOINT_URL_<SERVICE> variables, which is how the local stack points the
very same code at its emulators.
"""
from __future__ import annotations

from typing import Any

import boto3
from botocore.config import Config

from chalicelib.config import get_settings
from chalicelib.process import kept, kept_per_thread


@kept
def _session() -> boto3.session.Session:
    return boto3.session.Session()


def _config(read_timeout: float | None = None, max_attempts: int | None = None, *,
            service: str | None = None) -> Config:
    settings = get_settings()
    extra: dict[str, Any] = {}
    if service == "s3":
        # Presigned URLs must be SigV4, the only version that binds headers such as
        # Content-Length and works with SSE-KMS; botocore still presigns SigV2 by default.
        extra["signature_version"] = "s3v4"
        # And they must name the bucket's regional host (`<bucket>.s3.<region>.amazonaws.com`):
        # botocore's "auto" style names the global `<bucket>.s3.amazonaws.com` outside
        # us-east-1, which opt-in regions (ap-east-1, me-south-1, ...) do not serve and which
        # redirects (breaking a presigned PUT) while a new bucket's DNS settles. Explicit
        # virtual-host style plus the regional us-east-1 endpoint gives the regional host in
        # every region; an IP-literal endpoint (the local stack's S3) still gets path style.
        extra["s3"] = {"addressing_style": "virtual", "us_east_1_regional_endpoint": "regional"}
    return Config(
        region_name=settings.region,
        connect_timeout=settings.aws_connect_timeout,
        read_timeout=read_timeout or settings.aws_read_timeout,
        retries={"mode": "standard", "max_attempts": max_attempts or settings.aws_max_attempts},
        max_pool_connections=32,
        **extra,
    )


@kept
def client(service: str, endpoint_url: str | None = None, *, read_timeout: float | None = None,
           max_attempts: int | None = None) -> Any:
    """A shared client for a service (thread-safe once built; `kept` serialises building).

    `read_timeout` and `max_attempts` override the defaults for a service whose
    calls need their own bounds (a model stream waits longer between chunks, and
    its throttling is retried by the caller, which knows whether text was sent).
    """
    return _session().client(service, endpoint_url=endpoint_url,
                             config=_config(read_timeout, max_attempts, service=service))


@kept_per_thread
def resource(service: str) -> Any:
    """A resource for this thread: unlike clients, boto3 resources are not thread-safe."""
    return _session().resource(service, config=_config())


def table(name: str) -> Any:
    return resource("dynamodb").Table(name)
