"""Cold start: the WebSocket handlers never load the GitHub client, PyJWT or http.client for GitHub."""
from __future__ import annotations

import subprocess
import sys

from tests.conftest import ROOT

PROBE = """
import sys, app
from chalicelib.dispatch import table as actions
from chalicelib.github import params
heavy = [m for m in ("chalicelib.github.client", "chalicelib.github.worker", "chalicelib.transport",
                     "jwt", "cryptography") if m in sys.modules]
print(",".join(heavy))
"""


def test_the_message_handler_does_not_import_the_github_client():
    env = {"COGNITO_USER_POOL_ID": "us-east-1_Abc", "COGNITO_APP_CLIENT_IDS": "abc", "PATH": "/usr/bin"}
    out = subprocess.run([sys.executable, "-c", PROBE], cwd=ROOT, env=env, capture_output=True, text=True,
                         timeout=60, check=True).stdout.strip()
    assert out == ""
