"""The web IDE (web/, built by infra/web_bundle.py) in a real headless Chromium against a local
stack: SRP sign-in and its challenges, Markdown chat with highlighted and copyable code, cancel,
regenerate, untrusted replies rendered inert, sessions (history after a reload, rename, delete),
a 1 MiB upload with progress that the model sees, a repository file into the chat and a proposed
change into a pull request, reconnecting by itself, and sign-out that revokes the refresh token.
Every page is watched for script errors, failed loads and CSP violations (under the same
Content-Security-Policy CloudFront sends: infra/web_csp.py). Each main view is saved as a
screenshot under tests/e2e/screenshots/ (git-ignored) for review.

Chromium is Debian's package (`make test` installs it where it can: `make test-tools`), driven by
Playwright with the system browser, so nothing is downloaded from a browser CDN."""
from __future__ import annotations

import json
import os
import re
import shutil
import urllib.request
import uuid
from pathlib import Path
from typing import TYPE_CHECKING

import boto3
import pytest

from devserver import github as emulator
from infra import resources, web_bundle
from tests.e2e.conftest import GENEROUS_LIMITS, start_stack, stop_stack

if TYPE_CHECKING:
    from playwright.sync_api import Request

CHROMIUM = os.environ.get("CHROMIUM") or shutil.which("chromium") or shutil.which("chromium-browser")
pytestmark = pytest.mark.skipif(CHROMIUM is None, reason="no Chromium here: `make test-tools` installs Debian's")

# Chromium's own traffic (updates, sync, Google look-ups) is refused by a closed network; keep it quiet.
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync"]
WAIT_MS = 20_000
ENDED = re.compile("end_turn|max_tokens")  # a [[dump]] reply may be longer than maxTokens
SCREENSHOTS = Path(__file__).with_name("screenshots")
REPO = "octo-org/hello-world"
# A 1 MiB context file is about 262,000 tokens: this stack lets a chat carry it, past the
# default model's real window of 200,000 (the echo model reads anything; the app refuses an
# input the model's `contextTokens` cannot hold).
WEB_STACK_ENV = {**GENEROUS_LIMITS, "CONTEXT_TOKEN_LIMIT": "400000", "COST_BUDGET_USD_PER_MONTH": "500",
                 "MODELS": json.dumps({"anthropic.claude-3-haiku-20240307-v1:0": {"contextTokens": 1_000_000}})}


@pytest.fixture(scope="module")
def web_stack(tmp_path_factory):
    try:
        web_bundle.build_assets()  # what `make` does before the tests; quick when nothing changed
    except web_bundle.BuildError as error:
        pytest.fail(str(error))
    running = start_stack(tmp_path_factory.mktemp("web-stack"), env=WEB_STACK_ENV)
    yield running
    stop_stack(running.process)


@pytest.fixture(scope="module")
def browser():
    sync_api = pytest.importorskip("playwright.sync_api")
    with sync_api.sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
        yield launched
        launched.close()


@pytest.fixture
def problems():
    """What went wrong in the page: script errors, CSP violations (Chromium reports them as console
    errors, and the page's own listener below as well), failed loads. Tests remove what they expect."""
    found: list[str] = []
    yield found
    assert found == []


# Runs before the page's scripts, outside its CSP (Playwright injects it): a CSP violation of any
# kind is reported as a console error, and upload progress events are counted.
WATCH = """
document.addEventListener("securitypolicyviolation",
  (e) => console.error(`CSP violation: ${e.violatedDirective} ${e.blockedURI}`));
window.__uploadProgress = [];
const send = XMLHttpRequest.prototype.send;
XMLHttpRequest.prototype.send = function (body) {
  this.upload.addEventListener("progress", (e) => window.__uploadProgress.push(e.loaded));
  return send.call(this, body);
};
"""


def open_page(browser, stack, problems, **context_options):
    context = browser.new_context(**context_options)
    context.add_init_script(WATCH)
    page = context.new_page()
    page.on("console", lambda message: message.type == "error" and problems.append(message.text))
    page.on("pageerror", lambda error: problems.append(str(error)))
    page.on("response", lambda response: response.status >= 400
            and problems.append(f"{response.status} {response.url}"))
    page.goto(stack.document["httpUrl"] + "/")
    return page


@pytest.fixture
def page(browser, web_stack, problems):
    opened = open_page(browser, web_stack, problems, viewport={"width": 1400, "height": 900},
                       permissions=["clipboard-read", "clipboard-write"])
    yield opened
    opened.context.close()


def expect(locator):
    # The page's CSP forbids eval, so waits are Playwright's locator assertions, not wait_for_function.
    from playwright.sync_api import expect as playwright_expect

    return playwright_expect(locator)


def shot(page, name):
    SCREENSHOTS.mkdir(exist_ok=True)
    page.screenshot(path=str(SCREENSHOTS / f"{name}.png"))


def sign_in(page, stack, username="dev", password=None):
    page.fill("#username", username)
    page.fill("#password", password if password is not None else stack.endpoints.dev_password(username))
    page.click("#signin-form button[type=submit]")


def signed_in(page, stack, username="dev"):
    sign_in(page, stack, username)
    expect(page.locator("#status")).to_have_text(f"connected as {username}", timeout=WAIT_MS)


def send(page, prompt):
    page.fill("#prompt", prompt)
    page.press("#prompt", "Enter")


def last_reply(page):
    return page.locator(".msg.assistant").last


def wait_done(page, stop="end_turn"):
    expect(last_reply(page).locator(".meta .stop")).to_contain_text(stop, timeout=WAIT_MS)


def cognito(stack):
    """boto3 Cognito at the page's endpoint (the local stack's front of moto)."""
    return boto3.client("cognito-idp", endpoint_url=stack.document["cognito"]["endpointUrl"], region_name="us-east-1",
                        aws_access_key_id="testing", aws_secret_access_key="testing")


def new_user(stack, *, temporary=False) -> tuple[str, str]:
    pool = stack.document["cognito"]["userPoolId"]
    username, password = f"web-{uuid.uuid4().hex[:8]}", f"Pw-{uuid.uuid4().hex[:12]}-9a"
    client = cognito(stack)
    if temporary:
        client.admin_create_user(UserPoolId=pool, Username=username, TemporaryPassword=password,
                                 MessageAction="SUPPRESS")
    else:
        client.admin_create_user(UserPoolId=pool, Username=username, MessageAction="SUPPRESS")
        client.admin_set_user_password(UserPoolId=pool, Username=username, Password=password, Permanent=True)
    return username, password


# --- chat ----------------------------------------------------------------------------------

MARKDOWN = """# Plan

Some **bold** text, a [link](https://example.com/docs) and `inline code`.

```python
def greet(name):
    return f"hello {name}"  # a comment
```

1. first
2. second
"""


def test_sign_in_with_srp_then_markdown_with_highlighted_copyable_code(page, web_stack):
    shot(page, "1-sign-in")
    requests: list[dict] = []

    def record(r: Request) -> None:
        if r.method == "POST" and "cognito" not in r.url:
            requests.append({"target": r.headers.get("x-amz-target"), "body": r.post_data or ""})
    page.on("request", record)
    signed_in(page, web_stack)
    assert page.input_value("#password") == ""  # the password does not stay in the page
    # SRP: the password never went over the wire, in any request the page made.
    targets = [r["target"] for r in requests if r["target"]]
    assert "AWSCognitoIdentityProviderService.InitiateAuth" in targets
    assert all(web_stack.endpoints.dev_password("dev") not in r["body"] for r in requests)
    assert any('"USER_SRP_AUTH"' in r["body"] for r in requests)
    expect(page.locator("#limits [data-limit=requests]")).to_contain_text("requests", timeout=WAIT_MS)
    expect(page.locator("#limits [data-limit=tokens]")).to_contain_text("resets in")
    # A money budget (COST_BUDGET_USD_PER_MONTH) shows beside them, in dollars.
    expect(page.locator("#limits [data-limit=cost]")).to_contain_text(re.compile(r"\$\d+\.\d\d budget"))

    send(page, MARKDOWN)
    wait_done(page)
    reply = last_reply(page)
    assert reply.locator("h1").text_content() == "Plan"
    assert reply.locator("strong").text_content() == "bold"
    assert reply.locator("ol li").count() == 2
    link = reply.locator("a[href='https://example.com/docs']")
    assert link.get_attribute("rel") == "noopener noreferrer nofollow" and link.get_attribute("target") == "_blank"
    code = reply.locator("pre.code code")
    expect(code.locator("span.tok-keyword").first).to_have_text("def", timeout=WAIT_MS)  # highlighted
    expect(code.locator("span.tok-comment")).to_have_text("# a comment")
    assert code.text_content() == 'def greet(name):\n    return f"hello {name}"  # a comment\n'
    reply.locator("pre.code button.copy").click()
    expect(reply.locator("pre.code button.copy")).to_have_text("Copied")
    assert page.evaluate("navigator.clipboard.readText()") == code.text_content()
    assert "in /" in reply.locator(".meta .stop").text_content()  # the usage, from `done`
    shot(page, "2-chat")


def test_cancel_with_escape_then_regenerate(page, web_stack):
    signed_in(page, web_stack)
    prompt = "[[slow:300]] a reply that takes its time, word by word, until it is cancelled"
    send(page, prompt)
    expect(page.locator("#cancel")).to_be_enabled(timeout=WAIT_MS)
    expect(last_reply(page).locator(".body")).not_to_be_empty(timeout=WAIT_MS)  # some deltas arrived
    page.keyboard.press("Escape")
    wait_done(page, "cancelled")
    assert page.is_disabled("#cancel") and page.is_enabled("#regenerate")

    page.click("#regenerate")
    expect(page.locator(".msg.user").last.locator(".note")).to_have_text("Regenerated")
    wait_done(page, "end_turn")
    assert last_reply(page).locator(".body").text_content().strip() == prompt  # the echo model, whole


def test_a_hostile_reply_renders_inert(page, web_stack):
    signed_in(page, web_stack)
    hostile = ('<img src=x onerror="window.pwned=1"><script>window.pwned=2</script> '
               '[click](javascript:window.pwned=3) [data](data:text/html,<b>x</b>) '
               '![pixel](https://tracker.example/p.png) <a href="javascript:window.pwned=4">a</a>')
    send(page, hostile)
    wait_done(page)
    body = last_reply(page).locator(".body")
    assert body.locator("img, script, iframe").count() == 0
    hrefs = [a.get_attribute("href") for a in body.locator("a").all()]
    assert hrefs == ["https://tracker.example/p.png"]  # the image became a link; nothing else links
    assert "<img src=x" in body.text_content()  # shown as the text it is
    page.wait_for_timeout(300)
    assert page.evaluate("window.pwned") is None


def test_the_policy_closes_the_html_sinks_the_sanitizer_does_not_feed(page, web_stack, problems):
    """Under the page's CSP a string written into an HTML sink is refused (Trusted Types), while DOMPurify's
    own policy renders replies: one forgotten `innerHTML = reply` could not run what the reply holds."""
    signed_in(page, web_stack)
    send(page, "**still rendered** under Trusted Types")
    wait_done(page)
    assert last_reply(page).locator("strong").text_content() == "still rendered"
    refused = page.evaluate("""() => {
        const box = document.createElement("div");
        try { box.innerHTML = "<img src=x onerror='window.pwned=1'>"; return "allowed"; } catch (e) { return e.name; }
    }""")
    assert refused == "TypeError"
    page.wait_for_timeout(300)  # the violation's event comes after the throw
    expected = [p for p in problems if "TrustedHTML" in p or "require-trusted-types-for" in p]
    assert expected  # reported as the violation it is
    problems[:] = [p for p in problems if p not in expected]


def test_the_model_picker_lists_models_list_and_the_chat_uses_the_choice(page, web_stack):
    signed_in(page, web_stack)
    with web_stack.connect("dev") as client:
        answer = client.request("models.list")
    if answer["type"] == "error":  # a v1 server: no picker, the server's default model
        assert "unknown action" in answer["error"]["message"]
        expect(page.locator("#model-label")).to_be_hidden()
        return
    models = answer["data"]["models"]
    if len(models) < 2:
        expect(page.locator("#model-label")).to_be_hidden()
        return
    options = page.locator("#model option")
    expect(options).to_have_count(len(models), timeout=WAIT_MS)
    assert [o.get_attribute("value") for o in options.all()] == [m["id"] for m in models]
    assert page.input_value("#model") == next(m["id"] for m in models if m["default"])
    chosen = next(m["id"] for m in models if not m["default"])
    page.select_option("#model", chosen)
    send(page, "which model?")
    wait_done(page)
    expect(last_reply(page).locator(".meta .stop")).to_contain_text(chosen)  # the ack's model


def test_an_error_frame_says_what_it_is_and_what_to_do(page, web_stack):
    signed_in(page, web_stack)
    send(page, "[[midstream-error]] this reply breaks")
    error = last_reply(page).locator(".error")
    expect(error).to_contain_text("UPSTREAM_ERROR: ", timeout=WAIT_MS)
    expect(error.locator(".advice")).to_have_text("The model failed: regenerate to try again.")
    assert page.is_disabled("#cancel") and page.is_enabled("#send")


@pytest.mark.parametrize("kib", [40, 200])
def test_a_prompt_too_long_for_a_frame_goes_as_an_upload(page, web_stack, kib):
    """A pasted log of 40 KiB (over the frame's 24 KiB of prompt) was refused PAYLOAD_TOO_LARGE, and one over
    API Gateway's 128 KiB message cut the connection: the answer ended CONNECTION_LOST, and so did each regenerate.
    Such a prompt goes as a chat.upload body, as llm-ide's does."""
    signed_in(page, web_stack)
    marker = f"LOG-{uuid.uuid4().hex[:8]}"
    prompt = marker + "\n" + "2026-11-30 12:00:00 INFO a line of a long log\n" * (kib * 1024 // 45)
    page.locator("#prompt").evaluate("(box, text) => { box.value = text; }", prompt)  # pasted (fill types it: slow)
    page.press("#prompt", "Enter")
    wait_done(page, ENDED)
    assert last_reply(page).locator(".error").count() == 0
    assert last_reply(page).locator(".body").text_content().startswith(marker)  # the echo model read it
    with web_stack.connect("dev") as client:
        session = client.request("session.list", limit=1)["data"]["sessions"][0]
        stored = client.request("session.get", sessionId=session["sessionId"])["data"]["messages"]
    assert stored[0]["size"] == len(prompt.encode())


def test_max_tokens_that_are_no_positive_integer_are_refused_at_the_field(page, web_stack):
    """0, -5 or 1.5 max tokens were dropped without a word: the chat ran with the server's default. Now the field
    says what it takes and the prompt stays in the box, unsent."""
    signed_in(page, web_stack)
    for wrong in ("0", "-5", "1.5"):
        page.fill("#max-tokens", wrong)
        send(page, "with a wrong limit")
        assert page.locator("#max-tokens").evaluate("el => el.validationMessage")
        assert page.input_value("#prompt") == "with a wrong limit"
        assert page.locator(".msg").count() == 0
    page.fill("#max-tokens", "64")
    page.press("#prompt", "Enter")
    wait_done(page)
    assert page.input_value("#prompt") == ""


def test_a_reload_asks_first_while_a_typed_message_or_an_answer_would_be_lost(page, web_stack):
    """F5 by mistake threw away the message being typed, or the answer being written (and proposed changes),
    without a word: now the browser asks first, and staying keeps everything."""
    signed_in(page, web_stack)
    asked: list[str] = []

    def answer(dialog) -> None:
        asked.append(dialog.type)
        dialog.dismiss()  # stay

    page.on("dialog", answer)
    page.fill("#prompt", "a long message I was still writing")
    with pytest.raises(Exception, match="Timeout"):
        page.reload(timeout=2000)  # the user stays: no navigation
    assert asked == ["beforeunload"]
    assert page.input_value("#prompt") == "a long message I was still writing"
    page.fill("#prompt", "")
    page.reload()  # nothing to lose: no question
    expect(page.locator("#status")).to_have_text("connected as dev", timeout=WAIT_MS)
    assert asked == ["beforeunload"]


# --- sessions ------------------------------------------------------------------------------


def test_a_session_keeps_its_history_across_a_reload_then_is_renamed_and_deleted(page, web_stack):
    signed_in(page, web_stack, "dev2")
    first, second = f"first question {uuid.uuid4().hex[:6]}", "second question"
    send(page, first)
    wait_done(page)
    send(page, second)
    wait_done(page)
    title = first[:60]
    current = page.locator("#sessions li.current")
    expect(current.locator(".title")).to_have_text(title)

    page.reload()  # the tokens survive a reload of the tab; the password was never kept
    expect(page.locator("#status")).to_have_text("connected as dev2", timeout=WAIT_MS)
    assert page.locator(".msg").count() == 0
    item = page.locator("#sessions li", has_text=title)
    item.locator(".session-open").click()
    expect(page.locator(".msg.user .body")).to_have_text([first, second], timeout=WAIT_MS)
    expect(page.locator(".msg.assistant .body")).to_have_text([first, second])
    shot(page, "3-sessions")

    item.locator("button[aria-label^=Rename]").click()
    page.fill("#sessions input.rename", "Renamed in the browser")
    page.press("#sessions input.rename", "Enter")
    renamed = page.locator("#sessions li", has_text="Renamed in the browser")
    expect(renamed).to_have_count(1, timeout=WAIT_MS)
    expect(page.locator("#chat-title")).to_have_text("Renamed in the browser")

    renamed.locator("button[aria-label^=Delete]").click()
    expect(page.locator("#confirm-text")).to_contain_text("Renamed in the browser")
    page.click("#confirm-ok")
    expect(renamed).to_have_count(0, timeout=WAIT_MS)
    expect(page.locator("#chat-title")).to_have_text("New chat")
    with web_stack.connect("dev2") as client:
        listed = client.request("session.list", limit=100)["data"]["sessions"]
    assert "Renamed in the browser" not in {s["title"] for s in listed} and title not in {s["title"] for s in listed}


def test_a_late_page_of_one_session_stays_out_of_the_session_opened_next(browser, web_stack, problems):
    """A long session's history comes in pages: opening another session (or a new chat) while a page was on its
    way put that page's messages into the other transcript. The first session's second page is held here until
    the second session shows."""
    username, password = new_user(web_stack)
    page = open_page(browser, web_stack, problems, viewport={"width": 1400, "height": 900})
    held: list[str] = []
    sockets: list = []
    first: dict[str, str] = {}

    def route(ws) -> None:
        sockets.append(ws)
        server = ws.connect_to_server()

        def from_page(message) -> None:
            frame = json.loads(message) if isinstance(message, str) else {}
            if frame.get("action") == "session.get" and frame.get("cursor") == "page-2":
                held.append(frame["id"])  # answered below, after the other session shows
            else:
                server.send(message)

        def from_server(message) -> None:
            frame = json.loads(message) if isinstance(message, str) else {}
            data = frame.get("data") if frame.get("type") == "result" else None
            if isinstance(data, dict) and "messages" in data and data["session"]["sessionId"] == first.get("id"):
                ws.send(json.dumps({**frame, "data": {**data, "cursor": "page-2"}}))
            else:
                ws.send(message)

        ws.on_message(from_page)
        server.on_message(from_server)

    page.route_web_socket(re.compile(r"^wss?://"), route)
    sign_in(page, web_stack, username, password)
    expect(page.locator("#status")).to_have_text(f"connected as {username}", timeout=WAIT_MS)
    for prompt in ("the long session", "the other session"):
        page.click("#new-session")
        send(page, prompt)
        wait_done(page)
    first["id"] = page.locator("#sessions li", has_text="the long session").get_attribute("data-session-id")
    page.locator("#sessions li", has_text="the long session").locator(".session-open").click()
    expect(page.locator(".msg.user .body")).to_have_text(["the long session"], timeout=WAIT_MS)
    page.locator("#sessions li", has_text="the other session").locator(".session-open").click()
    expect(page.locator(".msg.user .body")).to_have_text(["the other session"], timeout=WAIT_MS)
    assert held
    late = {"messageId": "m-late", "role": "user", "content": "a late message of the long session", "size": 34,
            "createdAt": "2026-11-30T12:00:00Z"}
    sockets[-1].send(json.dumps({"type": "result", "id": held[0], "data": {
        "session": {"sessionId": first["id"], "title": "the long session", "createdAt": "2026-11-30T12:00:00Z",
                    "updatedAt": "2026-11-30T12:00:00Z"}, "messages": [late], "cursor": None}}))
    page.wait_for_timeout(500)
    expect(page.locator(".msg.user .body")).to_have_text(["the other session"])
    expect(page.locator("#chat-title")).to_have_text("the other session")
    page.context.close()


def test_a_title_the_server_would_refuse_is_explained_at_the_field_and_kept(page, web_stack):
    """Renaming to zero-width spaces only or to a line with a tab went to the server, whose BAD_REQUEST came as a
    note while the field closed on the old title (what was typed gone); an empty one closed it without a word."""
    signed_in(page, web_stack, "dev2")
    words = f"Keep this title {uuid.uuid4().hex[:6]}"
    send(page, words)
    wait_done(page)
    item = page.locator("#sessions li.current")
    item.locator("button[aria-label^=Rename]").click()
    field = page.locator("#sessions input.rename")
    blank = "A title needs some visible text."
    for wrong, reason in (("\u200b\u2060", blank), ("", blank),
                          ("one\ttwo", "A title is one line, without tabs or other control characters."),
                          ("x" * 201, "A title has at most 200 characters; this one has 201.")):
        field.fill(wrong)
        field.press("Enter")
        assert field.evaluate("el => el.validationMessage") == reason
        assert field.input_value() == wrong
    field.fill("Fixed title")
    field.press("Enter")
    expect(page.locator("#chat-title")).to_have_text("Fixed title", timeout=WAIT_MS)


def test_a_first_line_cut_to_a_title_inside_an_emoji_still_makes_a_session(page, web_stack):
    # The title is the first line's first 60 characters: cut in UTF-16 units, it would end in half an
    # emoji, a lone surrogate the server refuses (BAD_REQUEST), and the chat would never start.
    signed_in(page, web_stack, "dev2")
    prompt = "q" * 59 + "😀 and the rest of the question " + uuid.uuid4().hex[:6]
    send(page, prompt)
    wait_done(page)
    expect(page.locator("#sessions li.current .title")).to_have_text("q" * 59 + "😀")
    assert last_reply(page).locator(".body").text_content().strip() == prompt


def test_a_title_is_the_first_line_of_text_without_its_markdown(page, web_stack):
    """A prompt that opens with a blank line and a heading is titled by the heading's words ("## Plan" was)."""
    signed_in(page, web_stack, "dev2")
    words = f"Plan the migration {uuid.uuid4().hex[:6]}"
    send(page, f"\n## {words}\n\n- first step")
    wait_done(page)
    expect(page.locator("#sessions li.current .title")).to_have_text(words)


def test_a_first_line_with_a_tab_or_another_line_break_still_makes_a_session(page, web_stack):
    """The server takes a title of one line without control characters: a tab (refused: the chat never
    started), a Unicode line separator or only zero-width characters are not sent as one."""
    signed_in(page, web_stack, "dev2")
    words = f"Fix the parser {uuid.uuid4().hex[:6]}"
    send(page, "\u200b\u2060\n" + words.replace(" ", "\t", 1) + "\u2028and the lexer\x85too")
    wait_done(page)
    expect(page.locator("#sessions li.current .title")).to_have_text(words)


# --- context -------------------------------------------------------------------------------


def test_a_1_mib_file_uploads_with_progress_and_the_model_sees_it(page, web_stack):
    signed_in(page, web_stack)
    marker = f"MARKER-{uuid.uuid4().hex}"
    content = (marker + "\n" + "lorem ipsum dolor sit amet\n" * 40_000)[: 1024 * 1024]
    puts: list[tuple[str, int]] = []

    def record(r: Request) -> None:
        if r.method == "PUT":
            puts.append((r.url, len(r.post_data_buffer or b"")))
    page.on("requestfinished", record)
    page.set_input_files("#file-input", files=[{"name": "big notes.txt", "mimeType": "text/plain",
                                                 "buffer": content.encode()}])
    chip = page.locator("#attached .chip", has_text="uploads/big notes.txt")
    expect(chip).to_have_count(1, timeout=WAIT_MS)
    expect(page.locator("#context-list li", has_text="uploads/big notes.txt")).to_contain_text("1.0 MiB")
    assert [size for url, size in puts if url.startswith(web_stack.emulators["s3Url"])] == [1024 * 1024]
    progress = page.evaluate("window.__uploadProgress")
    assert progress and progress[-1] == 1024 * 1024  # the <progress> bar followed these events
    shot(page, "4-context")

    send(page, "[[dump]]")
    wait_done(page, ENDED)
    expect(last_reply(page).locator(".body")).to_contain_text(marker, timeout=WAIT_MS)


def test_a_file_dropped_beside_the_message_box_is_attached_not_opened(page, web_stack):
    """Only the message box took dropped files: one dropped on the transcript was the browser's, which opens it
    in the page's place, and the answer being written and the typed prompt went with the page."""
    signed_in(page, web_stack)
    prevented = page.evaluate("""() => {
        const data = new DataTransfer();
        data.items.add(new File(["dropped notes"], "dropped.txt", { type: "text/plain" }));
        const target = document.getElementById("transcript");
        return ["dragover", "drop"].map((type) => {
            const event = new DragEvent(type, { dataTransfer: data, bubbles: true, cancelable: true });
            target.dispatchEvent(event);
            return event.defaultPrevented;
        });
    }""")
    assert prevented == [True, True]
    expect(page.locator("#attached .chip", has_text="uploads/dropped.txt")).to_have_count(1, timeout=WAIT_MS)


def test_a_file_too_binary_for_context_is_refused_with_its_reason(page, web_stack):
    signed_in(page, web_stack)
    page.set_input_files("#file-input", files=[{"name": "blob.bin", "mimeType": "application/octet-stream",
                                                 "buffer": bytes(range(256)) * 4}])
    expect(page.locator("#uploads .error")).to_have_text(
        "uploads/blob.bin: uploads/blob.bin is not UTF-8 text: only text files can be context", timeout=WAIT_MS)
    assert page.locator("#attached .chip").count() == 0


def test_a_file_larger_than_the_server_takes_is_refused_before_it_is_read(page, web_stack, tmp_path):
    """A file dropped or chosen was read whole, gigabytes into the tab's memory, before the server refused it."""
    with urllib.request.urlopen(web_stack.document["httpUrl"] + "/config.json", timeout=5) as response:
        limit = json.loads(response.read())["contextMaxBytes"]
    assert limit == 5 * 1024 * 1024  # the stack's CONTEXT_MAX_BYTES: its default
    huge = tmp_path / "huge.log"
    with huge.open("wb") as sparse:
        sparse.truncate(3 * 1024 ** 3)  # 3 GiB that take no room on disk, nor in memory unless read
    signed_in(page, web_stack)
    page.fill("#prompt", "what I typed stays")
    page.evaluate("""(limit) => {
        window.__reads = 0;  // any way of reading a file's bytes counts
        for (const name of ["arrayBuffer", "text", "stream", "slice"]) {
            const read = Blob.prototype[name];
            Blob.prototype[name] = function (...args) { window.__reads += 1; return read.apply(this, args); };
        }
        const data = new DataTransfer();
        data.items.add(new File([new Uint8Array(limit + 1024 * 1024)], "dropped.log"));
        for (const type of ["dragover", "drop"]) {
            document.getElementById("transcript").dispatchEvent(
                new DragEvent(type, { dataTransfer: data, bubbles: true, cancelable: true }));
        }
    }""", limit)
    page.set_input_files("#file-input", str(huge))
    expect(page.locator("#uploads .error")).to_have_text([
        "uploads/dropped.log: uploads/dropped.log is 6.0 MiB: a context file may be at most 5.0 MiB",
        "uploads/huge.log: uploads/huge.log is 3.0 GiB: a context file may be at most 5.0 MiB"], timeout=WAIT_MS)
    assert page.evaluate("window.__reads") == 0
    assert page.input_value("#prompt") == "what I typed stays" and page.locator("#attached .chip").count() == 0


def test_a_file_name_the_server_would_refuse_as_a_path_is_made_one_it_takes(page, web_stack):
    """A name with a C1 control (U+0085, from an old Windows code page), a fullwidth solidus or the account sign
    (NFKC 'a/c') was sent as it was, refused BAD_REQUEST, and the file never reached the chat."""
    signed_in(page, web_stack)
    name = "report\x85 2026\uff0fQ4 \u2100.txt"
    page.set_input_files("#file-input", files=[{"name": name, "mimeType": "text/plain", "buffer": b"numbers"}])
    expect(page.locator("#attached .chip", has_text="uploads/report_ 2026_Q4 _.txt")).to_have_count(1, timeout=WAIT_MS)
    assert page.locator("#uploads .error").count() == 0


# --- repositories ----------------------------------------------------------------------------


def repository_open(page, stack):
    """Signed in, with REPO chosen in the repository pane."""
    signed_in(page, stack)
    page.click("#tab-repo")
    expect(page.locator("#repo-select option", has_text=REPO)).to_have_count(1, timeout=WAIT_MS)
    page.select_option("#repo-select", REPO)


def replied_with_a_change(page, stack, code):
    """Signed in with REPO open, and a reply holding `code` as a new src/app.py, to propose."""
    repository_open(page, stack)
    send(page, f"```python src/app.py\n{code}\n```")
    wait_done(page)


def test_browse_a_repository_add_a_file_and_turn_a_proposed_change_into_a_pull_request(page, web_stack):
    repository_open(page, web_stack)
    page.locator("#repo-tree button", has_text="src").click()
    page.locator("#repo-tree button", has_text="app.py").click()
    editor = page.locator("#editor .cm-content")
    expect(editor).to_contain_text("def", timeout=WAIT_MS)
    shot(page, "5-repository")
    page.click("#add-file")
    expect(page.locator("#attached .chip", has_text=f"repos/{REPO}/src/app.py")).to_have_count(1, timeout=WAIT_MS)

    changed = 'def handler(event):\n    return {"statusCode": 200, "body": "changed in the web IDE"}\n'
    send(page, "[[dump]] what does this file do?")
    wait_done(page, ENDED)
    assert f"repos/{REPO}/src/app.py" in last_reply(page).locator(".body").text_content()  # the model saw it
    send(page, f"Here is the change:\n\n```python src/app.py\n{changed}```\n")
    wait_done(page)
    last_reply(page).locator("button.propose", has_text="src/app.py").click()
    expect(page.locator("#pane-changes .cm-mergeView")).to_have_count(1, timeout=WAIT_MS)
    expect(page.locator("#changes-count")).to_have_text("(1)")
    shot(page, "6-changes")

    branch = f"web-ide/{uuid.uuid4().hex[:8]}"
    page.fill("#pr-title", "A change from the web IDE")
    page.fill("#pr-branch", branch)
    page.fill("#pr-body", "Proposed by the model, accepted in the diff view.")
    page.click("#open-pr")
    link = page.locator("#pr-link")
    expect(link).to_have_text(re.compile(r"#\d+"), timeout=WAIT_MS)
    number = int(link.text_content()[1:])
    assert link.get_attribute("href").endswith(f"/{REPO}/pull/{number}")

    with urllib.request.urlopen(f"{web_stack.emulators['githubApiUrl']}/_emulator/state?repo={REPO}", timeout=5) as r:
        state = json.loads(r.read())
    pull = next(p for p in state["pulls"] if p["number"] == number)
    branch = f"llm-ide/{branch}"  # the server makes every pull request's branch under its prefix
    assert pull["head"]["ref"] == branch and pull["base"] == {"ref": "main"}
    with web_stack.connect("dev") as client:
        on_branch = client.request("github.file", timeout=30, repo=REPO, path="src/app.py", ref=branch)["data"]
        on_main = client.request("github.file", timeout=30, repo=REPO, path="src/app.py", ref="main")["data"]
    assert on_branch["content"] == changed
    assert on_main["content"] == emulator.SEED_FILES["src/app.py"].decode()


def test_a_change_proposed_twice_at_once_shows_once(page, web_stack):
    """A double click on "Review change" loaded the diff twice: two panes for one file, the first one's Discard
    gone (it discarded the second), and the first never part of the pull request."""
    replied_with_a_change(page, web_stack, "print('twice')")
    last_reply(page).locator("button.propose").dblclick()
    expect(page.locator("#pane-changes .cm-mergeView")).to_have_count(1, timeout=WAIT_MS)
    page.wait_for_timeout(1000)  # the second proposal has loaded by now
    expect(page.locator("#changes .change")).to_have_count(1)
    expect(page.locator("#changes-count")).to_have_text("(1)")
    page.locator("#changes .change button", has_text="Discard").click()
    expect(page.locator("#changes .change")).to_have_count(0)


def test_a_pull_request_url_that_is_no_web_page_is_no_link(page, web_stack):
    """The pull request's URL is GitHub's `html_url`, passed on by the server: a `javascript:` one became the
    href of the page's link (the CSP, without 'unsafe-inline', kept a click from running it; nothing else did)."""
    def route(ws) -> None:
        server = ws.connect_to_server()

        def from_page(message) -> None:
            frame = json.loads(message) if isinstance(message, str) else {}
            if frame.get("action") == "github.pr":
                ws.send(json.dumps({"type": "result", "id": frame["id"], "data": {
                    "number": 7, "url": "javascript:window.pwned=1", "branch": "llm-ide/x", "commitSha": "0" * 40}}))
            else:
                server.send(message)

        ws.on_message(from_page)

    page.route_web_socket(re.compile(r"^wss?://"), route)
    page.reload()
    replied_with_a_change(page, web_stack, "print('changed')")
    last_reply(page).locator("button.propose").click()
    expect(page.locator("#pane-changes .cm-mergeView")).to_have_count(1, timeout=WAIT_MS)
    page.fill("#pr-branch", "x")
    page.click("#open-pr")
    expect(page.locator("#pr-result")).to_contain_text("Pull request #7 opened", timeout=WAIT_MS)
    assert page.locator("#pr-result a").count() == 0
    page.locator("#pr-result").click()
    page.wait_for_timeout(300)
    assert page.evaluate("window.pwned") is None


# --- the connection --------------------------------------------------------------------------


def _drop_connections(stack, username):
    """Close the user's sockets from the server side, as API Gateway does (Management API DELETE)."""
    dynamodb = boto3.resource("dynamodb", endpoint_url=stack.document["awsEndpointUrl"], region_name="us-east-1",
                              aws_access_key_id="testing", aws_secret_access_key="testing")
    table = dynamodb.Table(resources.table("connections").physical_name("local"))
    ids = [item["connectionId"] for item in table.scan()["Items"] if item.get("username") == username]
    management = boto3.client("apigatewaymanagementapi", endpoint_url=f"{stack.document['httpUrl']}/local",
                              region_name="us-east-1", aws_access_key_id="testing", aws_secret_access_key="testing")
    for connection_id in ids:
        management.delete_connection(ConnectionId=connection_id)
    return ids


def _server_resumes(stack) -> bool:
    with stack.connect("dev") as client:
        frame = client.request("chat.resume", requestId="nope", afterSeq=-1)
    return not (frame["type"] == "error" and "unknown action" in frame["error"]["message"])


def _answer_cut_off(page, web_stack, username: str, password: str) -> str:
    """Sign in, ask for a 6-second answer, and close the user's connections once its first words show; the prompt."""
    sign_in(page, web_stack, username, password)
    expect(page.locator("#status")).to_have_text(f"connected as {username}", timeout=WAIT_MS)
    prompt = "[[slow:150]] " + " ".join(f"word{i}" for i in range(40))
    send(page, prompt)
    expect(last_reply(page).locator(".body")).to_contain_text("word", timeout=WAIT_MS)
    assert _drop_connections(web_stack, username)
    return prompt


def test_a_socket_closed_mid_answer_comes_back_by_itself(browser, web_stack, problems):
    username, password = new_user(web_stack)
    page = open_page(browser, web_stack, problems)
    prompt = _answer_cut_off(page, web_stack, username, password)
    expect(page.locator("#status")).to_have_text(f"connected as {username}", timeout=WAIT_MS)  # reconnected
    if _server_resumes(web_stack):
        wait_done(page)  # chat.resume: the rest of the answer, byte for byte
        assert last_reply(page).locator(".body").text_content().strip() == prompt
    else:
        # A v1 server cannot resume: the answer ends with a clear error and regenerating works.
        expect(last_reply(page).locator(".error")).to_contain_text("CONNECTION_LOST", timeout=WAIT_MS)
        send(page, "after the reconnect")
        wait_done(page)
        assert last_reply(page).locator(".body").text_content().strip() == "after the reconnect"
    page.context.close()


def test_a_resume_refused_rate_limited_is_sent_again_after_its_retry_after(browser, web_stack, problems):
    """The minute's request limit refuses the page's first chat.resume (the socket's one scripted answer:
    the limit itself would make the test wait up to a minute), not the answer, which runs on: the page
    asks again after `retryAfter` and shows the whole answer, with no error."""
    username, password = new_user(web_stack)
    page = open_page(browser, web_stack, problems)
    refused: list[str] = []

    def route(ws) -> None:
        server = ws.connect_to_server()

        def from_page(message) -> None:
            frame = json.loads(message) if isinstance(message, str) else {}
            if frame.get("action") == "chat.resume" and not refused:
                refused.append(frame["id"])
                ws.send(json.dumps({"type": "error", "id": frame["id"], "error": {
                    "code": "RATE_LIMITED", "message": "the request limit of this minute is spent", "retryAfter": 1}}))
            else:
                server.send(message)

        ws.on_message(from_page)

    page.route_web_socket(re.compile(r"^wss?://"), route)
    prompt = _answer_cut_off(page, web_stack, username, password)
    wait_done(page)
    assert refused and last_reply(page).locator(".body").text_content().strip() == prompt
    assert last_reply(page).locator(".error").count() == 0
    page.context.close()


def test_the_whole_answer_through_connections_the_gateway_closes_every_5_seconds(browser, web_stack, short_stack,
                                                                               problems):
    """A 20-second answer while the gateway closes each connection after 5 s (API Gateway: two hours):
    the page reconnects, resumes, and shows the answer whole, the user doing nothing."""
    page = open_page(browser, short_stack, problems)  # web_stack built the bundle the short stack serves too
    signed_in(page, short_stack)
    prompt = ("[[slow:100]] " + " ".join(f"w{i}" for i in range(300)))[:800]  # 200 tokens of 4 bytes: 20 s
    closed_before = short_stack.log_text().count("its connection duration was reached")
    send(page, prompt)
    expect(last_reply(page).locator(".meta .stop")).to_contain_text("end_turn", timeout=45_000)
    assert last_reply(page).locator(".body").text_content().strip() == prompt
    assert short_stack.log_text().count("its connection duration was reached") - closed_before >= 3
    assert last_reply(page).locator(".error").count() == 0
    page.context.close()


def test_a_token_that_expires_mid_answer_is_renewed_and_the_answer_resumed(browser, web_stack, problems):
    """Access tokens of 8 s, an answer of 16 s: before each token expires the page renews it (the refresh
    token), moves to a new socket and resumes the answer there."""
    pool, client_id = web_stack.document["cognito"]["userPoolId"], web_stack.document["cognito"]["clientId"]
    cognito(web_stack).update_user_pool_client(
        UserPoolId=pool, ClientId=client_id, AccessTokenValidity=8, IdTokenValidity=8,
        TokenValidityUnits={"AccessToken": "seconds", "IdToken": "seconds"})
    try:
        username, password = new_user(web_stack)
        page = open_page(browser, web_stack, problems)
        sign_in(page, web_stack, username, password)
        expect(page.locator("#status")).to_have_text(f"connected as {username}", timeout=WAIT_MS)
        refreshes: list[str] = []

        def count_refresh(request) -> None:
            if request.method == "POST" and '"REFRESH_TOKEN_AUTH"' in (request.post_data or ""):
                refreshes.append(request.url)

        page.on("request", count_refresh)
        prompt = ("[[slow:100]] " + " ".join(f"t{i}" for i in range(300)))[:640]  # 160 tokens: 16 s
        send(page, prompt)
        expect(last_reply(page).locator(".meta .stop")).to_contain_text("end_turn", timeout=45_000)
        assert last_reply(page).locator(".body").text_content().strip() == prompt
        assert len(refreshes) >= 2 and last_reply(page).locator(".error").count() == 0
        page.context.close()
    finally:
        cognito(web_stack).update_user_pool_client(
            UserPoolId=pool, ClientId=client_id, AccessTokenValidity=1, IdTokenValidity=1,
            TokenValidityUnits={"AccessToken": "hours", "IdToken": "hours"})


def test_a_new_password_challenge_then_the_workspace(browser, web_stack, problems):
    username, temporary = new_user(web_stack, temporary=True)
    page = open_page(browser, web_stack, problems)
    sign_in(page, web_stack, username, temporary)
    expect(page.locator("#newpassword-form")).to_be_visible(timeout=WAIT_MS)
    page.fill("#new-password", "Chosen-Pw-123!")
    page.fill("#new-password-again", "Chosen-Pw-123!")
    page.click("#newpassword-form button[type=submit]")
    expect(page.locator("#status")).to_have_text(f"connected as {username}", timeout=WAIT_MS)
    page.click("#signout")
    expect(page.locator("#status")).to_have_text("signed out", timeout=WAIT_MS)
    sign_in(page, web_stack, username, "Chosen-Pw-123!")  # the new password is the password now
    expect(page.locator("#status")).to_have_text(f"connected as {username}", timeout=WAIT_MS)
    page.context.close()


def test_a_totp_challenge_then_the_workspace(browser, web_stack, problems):
    username, password = new_user(web_stack)
    client = cognito(web_stack)
    tokens = client.initiate_auth(ClientId=web_stack.document["cognito"]["clientId"], AuthFlow="USER_PASSWORD_AUTH",
                                  AuthParameters={"USERNAME": username, "PASSWORD": password})["AuthenticationResult"]
    client.associate_software_token(AccessToken=tokens["AccessToken"])
    client.verify_software_token(AccessToken=tokens["AccessToken"], UserCode="123456")
    client.set_user_mfa_preference(AccessToken=tokens["AccessToken"],
                                   SoftwareTokenMfaSettings={"Enabled": True, "PreferredMfa": True})
    page = open_page(browser, web_stack, problems)
    sign_in(page, web_stack, username, password)
    expect(page.locator("#totp-form")).to_be_visible(timeout=WAIT_MS)
    shot(page, "7-totp")
    page.fill("#totp-code", "123456")  # moto accepts any code; the page's part is asking for it
    page.click("#totp-form button[type=submit]")
    expect(page.locator("#status")).to_have_text(f"connected as {username}", timeout=WAIT_MS)
    page.context.close()


def test_a_wrong_password_is_refused_by_the_srp_check(page, web_stack, problems):
    sign_in(page, web_stack, password="not-the-password-1A!")
    expect(page.locator("#signin-error")).to_have_text("Incorrect username or password.", timeout=WAIT_MS)
    assert page.is_visible("#signin") and not page.is_visible("#workspace")
    front = web_stack.document["cognito"]["endpointUrl"].rstrip("/") + "/"
    assert f"400 {front}" in problems  # Cognito's NotAuthorizedException, and the console's note of it
    console_note = "Failed to load resource: the server responded with a status of 400"
    problems[:] = [p for p in problems if p != f"400 {front}" and not p.startswith(console_note)]


def test_an_expired_access_token_is_refreshed_with_the_refresh_token(page, web_stack):
    signed_in(page, web_stack, "dev2")
    drift = page.evaluate("Object.keys(sessionStorage).find((key) => key.endsWith('.clockDrift'))")
    # The clock as the token sees it, a day ahead: the stored access token has expired.
    page.evaluate(f"sessionStorage.setItem({json.dumps(drift)}, '-86400')")
    bodies: list[str] = []

    def record(r: Request) -> None:
        if r.method == "POST" and r.url.startswith(web_stack.document["cognito"]["endpointUrl"]):
            bodies.append(r.post_data or "")
    page.on("request", record)
    page.reload()
    expect(page.locator("#status")).to_have_text("connected as dev2", timeout=WAIT_MS)
    assert len(bodies) == 1 and '"AuthFlow":"REFRESH_TOKEN_AUTH"' in bodies[0]
    assert web_stack.endpoints.dev_password("dev2") not in bodies[0]
    send(page, "still signed in")
    wait_done(page)


def test_sign_out_revokes_the_refresh_token(page, web_stack):
    signed_in(page, web_stack, "dev2")
    stored = json.loads(page.evaluate("JSON.stringify(sessionStorage)"))
    [refresh] = [value for key, value in stored.items() if key.endswith(".refreshToken")]
    assert not any(web_stack.endpoints.dev_password("dev2") in value for value in stored.values())
    page.click("#signout")
    expect(page.locator("#status")).to_have_text("signed out", timeout=WAIT_MS)
    page.wait_for_timeout(300)  # the closed socket's events have fired: the status stays
    expect(page.locator("#status")).to_have_text("signed out")
    assert json.loads(page.evaluate("JSON.stringify(sessionStorage)")) == {}
    with pytest.raises(cognito(web_stack).exceptions.NotAuthorizedException, match="revoked"):
        cognito(web_stack).initiate_auth(ClientId=web_stack.document["cognito"]["clientId"],
                                         AuthFlow="REFRESH_TOKEN_AUTH", AuthParameters={"REFRESH_TOKEN": refresh})
    page.reload()
    expect(page.locator("#signin-form")).to_be_visible(timeout=WAIT_MS)  # nothing left to restore


def test_sign_out_leaves_nothing_of_the_user_in_the_page(page, web_stack):
    """Signing out hid the workspace and kept it: the next user of the tab had the first one's transcript in
    the page, the open repository file in the viewer, and every part of the first workspace still listening,
    so one upload went out twice, once on the first user's socket, reopened with the next user's token."""
    signed_in(page, web_stack)
    marker = f"private-{uuid.uuid4().hex[:8]}"
    send(page, marker)
    wait_done(page)
    page.click("#tab-repo")
    expect(page.locator("#repo-select option", has_text=REPO)).to_have_count(1, timeout=WAIT_MS)
    page.select_option("#repo-select", REPO)
    page.locator("#repo-tree button", has_text="README.md").click()
    expect(page.locator("#editor .cm-content")).to_contain_text("hello-world", timeout=WAIT_MS)
    page.click("#signout")
    expect(page.locator("#signin-form")).to_be_visible(timeout=WAIT_MS)
    expect(page.locator("#status")).to_have_text("signed out")
    assert marker not in page.content()
    assert page.locator("#editor .cm-editor").count() == 0

    sent: list[str] = []
    page.on("websocket", lambda ws: ws.on("framesent", lambda payload: sent.append(str(payload))))
    signed_in(page, web_stack, "dev2")
    page.set_input_files("#file-input", files=[{"name": "notes.txt", "mimeType": "text/plain", "buffer": b"hi"}])
    expect(page.locator("#attached .chip", has_text="uploads/notes.txt")).to_have_count(1, timeout=WAIT_MS)
    page.wait_for_timeout(500)  # a second listener's upload would have gone by now
    assert len([frame for frame in sent if '"context.put"' in frame]) == 1
    assert marker not in page.content()


# --- layout ----------------------------------------------------------------------------------


def test_dark_theme_and_half_a_laptop_screen(browser, web_stack, problems):
    page = open_page(browser, web_stack, problems, viewport={"width": 720, "height": 800}, color_scheme="dark")
    signed_in(page, web_stack)
    assert page.is_hidden("#panel")  # the side panel starts closed on a narrow screen
    send(page, "Narrow **and** dark")
    wait_done(page)
    shot(page, "8-narrow-dark")
    page.click("#toggle-panel")
    expect(page.locator("#panel")).to_be_visible()
    page.click("#theme")
    assert page.evaluate("document.documentElement.dataset.theme") == "light"
    page.keyboard.press("Alt+P")
    expect(page.locator("#panel")).to_be_hidden()
    for control in page.locator("button:visible, input:visible, textarea:visible, select:visible").all():
        name = (control.get_attribute("aria-label") or control.text_content().strip()
                or control.get_attribute("placeholder"))
        labelled = control.evaluate("el => el.labels ? el.labels.length : 0") if not name else 1
        assert name or labelled, control.evaluate("el => el.outerHTML")
    page.context.close()
