"""The bundled web client (web/) in a real headless Chromium against the local stack: sign in
with Cognito, ping, chat with streaming, cancel, usage, errors shown as text, sign out.

Chromium is Debian's package (`make test` installs it where it can: `make test-tools`), driven by
Playwright with the system browser, so nothing is downloaded from a browser CDN."""
from __future__ import annotations

import json
import os
import re
import shutil

import pytest

CHROMIUM = os.environ.get("CHROMIUM") or shutil.which("chromium") or shutil.which("chromium-browser")
pytestmark = pytest.mark.skipif(CHROMIUM is None, reason="no Chromium here: `make test-tools` installs Debian's")

# Chromium's own traffic (updates, sync, Google look-ups) is refused by a closed network; keep it quiet.
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync"]
WAIT_MS = 15_000


@pytest.fixture(scope="module")
def browser():
    sync_api = pytest.importorskip("playwright.sync_api")
    with sync_api.sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
        yield launched
        launched.close()


@pytest.fixture
def problems():
    """What went wrong in the page: script errors, CSP violations, failed loads (tests remove what they expect)."""
    found: list[str] = []
    yield found
    assert found == []


@pytest.fixture
def page(browser, stack, problems):
    context = browser.new_context()
    opened = context.new_page()
    opened.on("console", lambda message: message.type == "error" and problems.append(message.text))
    opened.on("pageerror", lambda error: problems.append(str(error)))
    opened.on("response", lambda response: response.status >= 400 and problems.append(f"{response.status} {response.url}"))
    opened.goto(stack.document["httpUrl"] + "/")
    yield opened
    context.close()


def sign_in(page, stack, username="dev", password=None):
    page.fill("#username", username)
    page.fill("#password", password if password is not None else stack.endpoints.dev_password(username))
    page.click("button[type=submit]")


def status_is(page, expected):
    # The page's CSP forbids eval, so waits are Playwright's locator assertions, not wait_for_function.
    from playwright.sync_api import expect

    expect(page.locator("#status")).to_have_text(expected, timeout=WAIT_MS)


def last_meta(page):
    return page.locator("#transcript .meta").last


def test_sign_in_ping_and_a_streamed_chat_in_the_browser(page, stack):
    sign_in(page, stack)
    status_is(page, "connected as dev")
    assert page.is_visible("#workspace") and not page.is_visible("#signin")
    assert page.input_value("#password") == ""  # the password does not stay in the page

    page.click("#ping")
    last_meta(page).filter(has_text="pong in").wait_for(timeout=WAIT_MS)

    prompt = "Hello from the browser: héllo 🌍 漢字"
    page.fill("#prompt", prompt)
    page.click("#send")
    last_meta(page).filter(has_text="end_turn").wait_for(timeout=WAIT_MS)
    assert page.locator("#transcript .user").last.text_content() == prompt
    assert page.locator("#transcript .assistant").last.text_content() == prompt  # the echo model, every delta
    assert page.is_disabled("#cancel")

    page.click("#usage")
    usage = json.loads(last_meta(page).filter(has_text="limits").text_content())
    assert set(usage) == {"limits", "usage"} and usage["usage"]["hour"]["requests"] >= 2


def test_cancel_stops_a_streaming_reply(page, stack):
    sign_in(page, stack)
    status_is(page, "connected as dev")
    page.fill("#prompt", "[[slow:5000]] a reply that takes five seconds")
    page.click("#send")
    page.wait_for_selector("#cancel:not([disabled])", timeout=WAIT_MS)
    page.click("#cancel")
    last_meta(page).filter(has_text="cancelled").wait_for(timeout=WAIT_MS)
    assert page.is_disabled("#cancel")


def test_reply_text_is_shown_as_text_never_as_markup(page, stack):
    sign_in(page, stack)
    status_is(page, "connected as dev")
    markup = '<img src=x onerror="window.pwned=1"><b>bold</b>'
    page.fill("#prompt", markup)
    page.click("#send")
    last_meta(page).filter(has_text="end_turn").wait_for(timeout=WAIT_MS)
    assert page.locator("#transcript .assistant").last.text_content() == markup
    assert page.locator("#transcript img, #transcript b").count() == 0
    assert page.evaluate("window.pwned") is None


def test_an_error_frame_is_shown_with_its_code(page, stack):
    sign_in(page, stack)
    status_is(page, "connected as dev")
    page.fill("#prompt", "[[midstream-error]] this reply breaks")
    page.click("#send")
    page.locator("#transcript .error").last.wait_for(timeout=WAIT_MS)
    assert page.locator("#transcript .error").last.text_content().startswith("UPSTREAM_ERROR: ")
    assert page.is_disabled("#cancel")


def test_a_wrong_password_is_refused_and_the_page_stays_signed_out(page, stack, problems):
    sign_in(page, stack, password="not-the-password-1A!")
    status_is(page, re.compile(r"^sign-in failed: .+"))
    assert page.is_visible("#signin") and not page.is_visible("#workspace")
    cognito = stack.document["cognito"]["endpointUrl"].rstrip("/") + "/"
    assert f"400 {cognito}" in problems  # Cognito's NotAuthorizedException, and the console's note of it
    problems[:] = [p for p in problems
                   if p != f"400 {cognito}" and not p.startswith("Failed to load resource: the server responded with a status of 400")]


def test_sign_out_closes_the_connection_and_returns_to_sign_in(page, stack):
    sign_in(page, stack, username="dev2")
    status_is(page, "connected as dev2")
    page.click("#signout")
    status_is(page, "signed out")
    assert page.is_visible("#signin") and not page.is_visible("#workspace")
