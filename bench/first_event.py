"""One cold Lambda container: a fresh interpreter imports `app` and hands it its events.

bench/coldstart.py runs this as `python -S -P bench/first_event.py SPEC OUT` in an unpacked
Lambda bundle (the working directory and PYTHONPATH), so only the bundle and the standard
library can be imported, as in Lambda. It uses nothing but the standard library, so what it
costs before `import app` is the interpreter's start and reading SPEC.

SPEC (JSON): `{"preload": [...], "imports": ["boto3", "chalice"], "steps": [{"handler",
"function", "timeoutMs", "memoryMb", "event"}, ...]}`: modules imported before the CPU clock
of the imports starts (none if not given), the modules to import (`["app"]` if not given; Lambda imports
only `app`), then each step one invocation of `app.<handler>` (Lambda's handler string) with
a context like Lambda's.
OUT (JSON): `imported` and `handled` (one per step) are `time.monotonic()` readings, the
system-wide CLOCK_MONOTONIC on Linux, so the parent compares them with its own reading
taken just before it started this interpreter; `importCpuMs` is the CPU time the imports
took (after the preload); `answers` are what each step returned; `modules` is every module
loaded by the end; `notImportable` the preloaded names that could not be imported.
"""
import json
import sys
import time
import uuid


class LambdaContext:
    """The attributes of the context Lambda's Python runtime passes to a handler."""

    def __init__(self, function_name: str, timeout_ms: int, memory_mb: int) -> None:
        self.function_name = f"llm-ide-dev-{function_name}"
        self.function_version = "$LATEST"
        self.invoked_function_arn = f"arn:aws:lambda:us-east-1:123456789012:function:{self.function_name}"
        self.memory_limit_in_mb = memory_mb
        self.aws_request_id = str(uuid.uuid4())
        self.log_group_name = f"/aws/lambda/{self.function_name}"
        self.log_stream_name = "2026/11/30/[$LATEST]0123456789abcdef0123456789abcdef"
        self._deadline = time.monotonic() + timeout_ms / 1000

    def get_remaining_time_in_millis(self) -> int:
        return max(0, int((self._deadline - time.monotonic()) * 1000))


def main() -> None:
    spec_path, out_path = sys.argv[1:3]
    with open(spec_path, encoding="utf-8") as file:
        spec = json.load(file)
    not_importable = []
    for name in spec.get("preload", ()):
        try:
            __import__(name)
        except ImportError:  # another platform's module a library probed for; reported back
            not_importable.append(name)
    cpu_started = time.process_time()
    for name in spec.get("imports", ["app"]):
        __import__(name)  # the import statement's path, so `-X importtime` reports the module itself too
    imported, cpu_imported = time.monotonic(), time.process_time()
    answers, handled = [], []
    for step in spec.get("steps", ()):
        context = LambdaContext(step["function"], step["timeoutMs"], step["memoryMb"])
        answers.append(getattr(sys.modules["app"], step["handler"])(step["event"], context))
        handled.append(time.monotonic())
    with open(out_path, "w", encoding="utf-8") as file:
        json.dump({"imported": imported, "handled": handled, "answers": answers,
                   "importCpuMs": (cpu_imported - cpu_started) * 1000, "notImportable": not_importable,
                   "modules": sorted(name for name, module in sys.modules.items() if module is not None)},
                  file, default=str)


if __name__ == "__main__":
    main()
