"""The web client's Content-Security-Policy: one definition for CloudFront (infra/stacks/edge.py)
and the local stack (devserver/gateway.py), so the page is tested under the policy it gets in AWS.

Nothing is allowed unless named (`default-src 'none'`): no inline script or style, no eval, no
frame, font, media or worker; the bundle is files from the page's own origin, and the one image is
the empty `data:` favicon. Model output is rendered as sanitized Markdown whose images become
links, so nothing in a reply can load a resource. Trusted Types close the DOM's HTML sinks
(`innerHTML`, `insertAdjacentHTML`, `DOMParser`...) to every string but what DOMPurify's own
policy (`dompurify`) returns, so a sink a future change or library opens with untrusted text
throws instead of running it (Chromium enforces it; other browsers ignore the two directives).
Only `connect-src` differs by where the page runs: the API, Cognito and the presigned S3 URLs are
on *.amazonaws.com in AWS, on 127.0.0.1 ports locally.
"""
from __future__ import annotations

from collections.abc import Iterable

AWS_CONNECT_SOURCES = ("wss://*.amazonaws.com", "https://*.amazonaws.com")


def content_security_policy(connect_sources: Iterable[str]) -> str:
    """The header's value; `connect_sources` are the origins the page may fetch from or open a socket to."""
    return "; ".join([
        "default-src 'none'",
        "connect-src " + " ".join(["'self'", *connect_sources]),
        "script-src 'self'",
        "style-src 'self'",
        "img-src data:",
        "frame-ancestors 'none'",
        "base-uri 'none'",
        "form-action 'none'",
        "require-trusted-types-for 'script'",
        "trusted-types dompurify",
    ])
