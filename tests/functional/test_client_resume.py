"""The client library's IdeClient keeps a chat going through what the backend says about its resumes, against
the scripted protocol backend (tests/protocol_backend.py): what the local stack cannot show on demand."""
from __future__ import annotations

import time

from client import IdeClient, Reconnect
from tests.protocol_backend import ProtocolBackend
from tests.servers import serve


def test_a_resume_refused_rate_limited_is_sent_again_after_its_retry_after():
    """The minute's request limit refuses the resume, not the chat, which runs on: one whole reply, one done."""
    fake = ProtocolBackend()
    prompt = "[[drop:3]] [[limited:2]] [[slow:10]] " + "abcdefghij" * 10
    with serve(fake.make_app()) as url:
        reconnect = Reconnect(lambda force: ("t1", time.time() + 3600), delays=(0.0, 0.1, 0.2))
        with IdeClient(url.replace("http://", "ws://") + "/ws", reconnect=reconnect) as client:
            frames = list(client.chat(None, messages=[{"role": "user", "content": prompt}], timeout=10))
    assert frames[0]["type"] == "ack" and frames[-1]["type"] == "done"
    stream = [f for f in frames if f["type"] == "delta"]
    assert [f["seq"] for f in stream] == list(range(len(stream)))
    assert "".join(f["text"] for f in stream) == prompt
    assert [f["afterSeq"] for f in fake.received if f.get("action") == "chat.resume"] == [2, 2, 2]
