"""What an AWS error says, read in one place for every service."""
from __future__ import annotations

from botocore.exceptions import ClientError


def error_code(error: ClientError) -> str:
    """The service's error code (`ConditionalCheckFailedException`, `NoSuchKey`, `GoneException`...), or ''."""
    return str(error.response.get("Error", {}).get("Code") or "")


def http_status(error: ClientError) -> int | None:
    """The HTTP status the service answered with, when known."""
    status = error.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
    return int(status) if status is not None else None
