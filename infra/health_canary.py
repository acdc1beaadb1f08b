"""The availability canary's script: one GET of the stage's public `/health`, every 5 minutes.

CloudWatch Synthetics runs this file as it is (inlined by infra/stacks/monitoring.py, handler
`index.handler`) on its Python runtime; a run fails when `handler` raises, which lowers the
canary's SuccessPercent, the metric the `availability` alarm watches. Standard library only,
so the tests run the same code against a local server.
"""
import json
import os
import urllib.error
import urllib.request

MAX_BODY_BYTES = 4096


class Unhealthy(Exception):
    """The endpoint answered, or failed to, in a way a user would notice."""


def check(url: str, *, stage: str, timeout: float = 10.0) -> dict:
    """The health answer, or Unhealthy: HTTP 200, JSON `{"status": "ok", "stage": <stage>}`."""
    request = urllib.request.Request(url, headers={"Accept": "application/json",
                                                   "User-Agent": "llm-ide-health-canary"})
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            status, raw = response.status, response.read(MAX_BODY_BYTES)
    except urllib.error.HTTPError as exc:
        raise Unhealthy(f"GET {url} answered HTTP {exc.code}") from None
    except (urllib.error.URLError, OSError) as exc:
        raise Unhealthy(f"GET {url} failed: {exc}") from None
    if status != 200:
        raise Unhealthy(f"GET {url} answered HTTP {status}")
    try:
        body = json.loads(raw)
    except ValueError:
        raise Unhealthy(f"GET {url} answered no JSON") from None
    if not isinstance(body, dict) or body.get("status") != "ok":
        raise Unhealthy(f"GET {url} answered {str(body)[:200]}")
    if body.get("stage") != stage:  # a URL pointing at another stage would watch the wrong API
        raise Unhealthy(f"GET {url} is stage {body.get('stage')!r}, not {stage!r}")
    return body


def handler(event, context):
    url, stage = os.environ["HEALTH_URL"], os.environ["EXPECTED_STAGE"]
    body = check(url, stage=stage, timeout=float(os.environ.get("TIMEOUT_SECONDS", "10")))
    print(f"healthy: {body}")  # the run's log, in the canary's artifacts and log group
    return "healthy"
