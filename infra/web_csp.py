"""The web client's Content-Security-Policy: one definition for CloudFront (infra/stacks/edge.py)
and the local stack (devserver/gateway.py), so the page is tested under the policy it gets in AWS.

No inline script or style, no eval: the bundle is files from the page's own origin. Model output
is rendered as sanitized Markdown whose images become links, so nothing in a reply can load a
resource. Only `connect-src` differs by where the page runs: the API, Cognito and the presigned
S3 URLs are on *.amazonaws.com in AWS, on 127.0.0.1 ports locally.
"""
from __future__ import annotations

from collections.abc import Iterable

AWS_CONNECT_SOURCES = ("wss://*.amazonaws.com", "https://*.amazonaws.com")


def content_security_policy(connect_sources: Iterable[str]) -> str:
    """The header's value; `connect_sources` are the origins the page may fetch from or open a socket to."""
    return "; ".join([
        "default-src 'self'",
        "connect-src " + " ".join(["'self'", *connect_sources]),
        "script-src 'self'",
        "style-src 'self'",
        "img-src 'self' data:",
        "object-src 'none'",
        "frame-ancestors 'none'",
        "base-uri 'none'",
        "form-action 'none'",
    ])
