"""chalicelib.process: what a container keeps, one reset, and values installed in place of builds."""
from __future__ import annotations

import threading
from collections.abc import Callable

from chalicelib import process

built: list[str] = []


@process.kept
def shared_value() -> str:
    built.append("shared")
    return "built"


@process.kept_per_thread
def thread_value() -> str:
    built.append("per thread")
    return "built"


def in_another_thread(get: Callable[[], str]) -> str:
    answer: list[str] = []
    thread = threading.Thread(target=lambda: answer.append(get()))
    thread.start()
    thread.join()
    return answer[0]


def test_a_shared_value_installed_is_every_threads_until_reset():
    process.reset()
    built.clear()
    process.install(shared_value, "installed")
    assert shared_value() == "installed" and in_another_thread(shared_value) == "installed" and built == []
    process.reset()
    assert shared_value() == "built" and in_another_thread(shared_value) == "built" and built == ["shared"]


def test_a_per_thread_value_installed_is_the_calling_threads_only():
    process.reset()
    built.clear()
    process.install(thread_value, "installed")
    assert thread_value() == "installed" and in_another_thread(thread_value) == "built"
    process.reset()
    assert thread_value() == "built" and built == ["per thread", "per thread"]
