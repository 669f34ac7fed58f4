"""One run, in a fresh fork of the runner: lock down, run ``main(**inputs)``, report.

Everything goes out as JSON lines on one pipe (``log``, then ``result`` or ``error``). The
child is untrusted from the moment user code starts: the runner checks what it writes."""

from __future__ import annotations

import builtins
import errno
import json
import os
import sys
import time
import traceback
from typing import IO, Any, NoReturn

from workflow_engine.sandbox.jail.python_lock import Lock

FILENAME = "<code>"
_FLUSH_CHARS = 512
_FLUSH_S = 0.05
_ENVELOPE = len(b'{"result": }\n')
_DENIED_ERRNOS = frozenset({errno.EPERM, errno.EACCES, errno.ENOSYS})


class LogWriter:
    """``sys.stdout``/``sys.stderr`` of the run: text goes out as ``log`` messages, coalesced
    (512 characters or 50 ms), at most ``limit`` bytes in all; the rest is dropped, once said."""

    def __init__(self, out: IO[bytes], limit: int) -> None:
        self._out = out
        self._left = limit
        self._buffer: list[str] = []
        self._size = 0
        self._since = 0.0
        self._truncated = False

    def write(self, text: str) -> int:
        if not isinstance(text, str):
            raise TypeError(f"write() argument must be str, not {type(text).__name__}")
        if self._truncated:  # (cheap: a loop printing for ever meets its CPU limit, not this)
            return len(text)
        if not self._buffer:
            self._since = time.monotonic()
        self._buffer.append(text)
        self._size += len(text)
        if self._size >= _FLUSH_CHARS or time.monotonic() - self._since >= _FLUSH_S:
            self.flush()
        return len(text)

    def flush(self) -> None:
        if not self._buffer:
            return
        text, self._buffer, self._size = "".join(self._buffer), [], 0
        if self._truncated:
            return
        data = text.encode("utf-8", "replace")
        if len(data) > self._left:
            data = data[: self._left]
            self._truncated = True
        self._left -= len(data)
        if data:
            send(self._out, {"log": data.decode("utf-8", "ignore")})
        if self._truncated:
            send(self._out, {"log": "\n[log truncated: more than the 64 KiB a run may print]\n"})

    def isatty(self) -> bool:
        return False


def send(out: IO[bytes], message: dict[str, Any]) -> None:
    out.write(json.dumps(message, ensure_ascii=False).encode() + b"\n")
    out.flush()


def run_child(job: dict[str, Any], lock: Lock, channel: int, private_dir: str) -> NoReturn:
    """In the forked child: never returns."""
    try:
        out = _isolate(channel, private_dir)
        lock.apply(private_dir)
    except BaseException as exc:  # reported, then the child exits
        os.write(channel, _line({"error": {"type": "sandbox", "message": f"setup: {exc!r}"}}))
        os._exit(70)
    logs = LogWriter(out, int(job["maxLog"]))
    sys.stdout = sys.stderr = logs
    message = _run(job["code"], job["inputs"], int(job["maxOutput"]))
    logs.flush()
    out.write(message)
    out.flush()
    os._exit(0)


def _isolate(channel: int, private_dir: str) -> IO[bytes]:
    """Only the channel stays open (as fd 3); stdin/stdout/stderr are /dev/null."""
    null = os.open(os.devnull, os.O_RDWR)
    for fd in (0, 1, 2):
        os.dup2(null, fd)
    os.dup2(channel, 3)
    os.closerange(4, os.sysconf("SC_OPEN_MAX"))  # (``null`` and the pipe's ends too)
    os.chdir(private_dir)
    os.environ.clear()
    return os.fdopen(3, "wb", buffering=1 << 16)


def _run(code: str, inputs: dict[str, Any], max_output: int) -> bytes:
    namespace: dict[str, Any] = {"__name__": "__main__", "__builtins__": builtins}
    try:
        compiled = compile(code, FILENAME, "exec")
    except SyntaxError as exc:
        return _error("code_error", f"SyntaxError: {exc.msg} (line {exc.lineno})")
    try:
        exec(compiled, namespace)
        main = namespace.get("main")
        if not callable(main):
            return _error("code_error", "the code must define a function `main`")
        value = main(**inputs)
    except BaseException as exc:  # the user's code failed: say how
        namespace.clear()  # (after a MemoryError, room to report it)
        return _failure(exc)
    # encoded piece by piece, and given up as soon as it is too large: a huge result is
    # refused as one, not after the CPU time to encode all of it (a character is at least a
    # byte in UTF-8, so counting characters never lets too much through)
    encoder = json.JSONEncoder(ensure_ascii=False, allow_nan=False)
    pieces: list[str] = []
    size = 0
    try:
        for piece in encoder.iterencode({"result": value}):
            size += len(piece)
            if size - _ENVELOPE > max_output:
                return _error("sandbox", f"the result is larger than {max_output} bytes (JSON)")
            pieces.append(piece)
    except (TypeError, ValueError, RecursionError) as exc:
        return _error("code_error", f"main must return a JSON value: {exc}")
    except MemoryError:
        return _error("sandbox", "memory limit reached while encoding the result")
    data = "".join(pieces).encode("utf-8", "surrogatepass") + b"\n"
    if len(data) - _ENVELOPE > max_output:
        return _error("sandbox", f"the result is larger than {max_output} bytes (JSON)")
    return data


def _failure(exc: BaseException) -> bytes:
    if isinstance(exc, MemoryError):
        return _error("sandbox", "memory limit reached")
    if isinstance(exc, OSError) and exc.errno in _DENIED_ERRNOS:
        return _error("sandbox", f"not allowed in the sandbox: {exc}")
    if isinstance(exc, RuntimeError) and "thread" in str(exc):
        return _error("sandbox", f"not allowed in the sandbox (threads): {exc}")
    if isinstance(exc, SystemExit):
        return _error("code_error", f"the code called exit({exc.code!r})")
    frames = [f for f in traceback.extract_tb(exc.__traceback__) if f.filename == FILENAME]
    where = "".join(traceback.format_list(frames[-5:]))
    detail = "".join(traceback.format_exception_only(type(exc), exc)).strip()
    return _error("code_error", f"{detail}\n{where}".strip())


def _error(error_type: str, message: str) -> bytes:
    return _line({"error": {"type": error_type, "message": message}})


def _line(message: dict[str, Any]) -> bytes:
    return json.dumps(message, ensure_ascii=False).encode("utf-8", "replace") + b"\n"
