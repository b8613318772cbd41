"""The Python SDK for mr apps.

An app is a Python module that defines ``map`` and ``reduce`` and hands them to
:func:`app`::

    import mrapp

    def map(name: str, contents: bytes):
        for word in mrapp.words(contents):
            yield word, "1"

    def reduce(key: str, values: list[str]) -> str:
        return str(len(values))

    WitWorld = mrapp.app(map, reduce)

``componentize-py`` turns it into a Wasm component of the world
``mapreduce:app/app@1.0.0`` (``apps-wasm/wit/app.wit``); the worker runs it sandboxed,
as it runs Rust apps. The author never sees the WIT types: this module encodes and
decodes the flat record buffers that cross the boundary.

- ``map(name, contents)`` runs once per split: ``contents`` are the raw bytes. It returns
  (or yields) ``(key, value)`` pairs, each a ``str`` or ``bytes``.
- ``reduce(key, values)`` runs once per key with every value emitted for it (as ``str``;
  invalid UTF-8 is replaced) and returns the key's one value (``str`` or ``bytes``).
- An exception fails the task; its type, message and traceback are the task's error.
- :func:`log` writes to the worker's log, :func:`counter` adds to a job counter.
"""

import re
import struct
import sys

from wit_world.imports import host

__all__ = ["app", "words", "log", "counter"]

_LEN = struct.Struct("<I")
_pack_len = _LEN.pack
_unpack_len = _LEN.unpack_from


def _letter_class() -> str:
    """A regex character class of every letter (``str.isalpha``: Unicode general
    category L, as Go's ``unicode.IsLetter`` and the Rust SDK), as ranges. Built once,
    when componentize-py pre-initializes the app, so it costs nothing per task."""
    ranges = []
    start = None
    for cp in range(sys.maxunicode + 2):
        letter = cp <= sys.maxunicode and chr(cp).isalpha()
        if letter and start is None:
            start = cp
        elif not letter and start is not None:
            ranges.append((start, cp - 1))
            start = None
    return "".join(
        re.escape(chr(a)) if a == b else f"{re.escape(chr(a))}-{re.escape(chr(b))}"
        for a, b in ranges
    )


_LETTERS = _letter_class()
# The exact rule. Slow as a scanner (sre tests a non-letter against every range of the
# class above U+FFFF), so it only splits the rare candidate runs below.
_WORD = re.compile(f"[{_LETTERS}]+")
_NOT_LETTER = re.compile(f"[^{_LETTERS}]")
# Runs of word characters that are not decimal digits or "_": letters, plus the few
# numeric characters Python counts as alphanumeric (², ½, Ⅻ). A fast, built-in category
# test; a run that holds such a character is split again by the exact rule.
_CANDIDATE = re.compile(r"[^\W\d_]+")

# Text is searched in pieces of about this many characters, each cut where a letter run
# ends, so that a 16 MiB split never becomes one list of millions of words.
_PIECE = 1 << 20


def words(contents: bytes):
    """The lab's words: maximal runs of letters (general category L); bytes that are not
    valid UTF-8 separate words, as any other non-letter does."""
    text = contents.decode("utf-8", "replace")
    at, end = 0, len(text)
    while at < end:
        cut = at + _PIECE
        if cut >= end:
            cut = end
        else:
            stop = _NOT_LETTER.search(text, cut)
            cut = stop.start() if stop else end
        runs = _CANDIDATE.findall(text, at, cut)
        if all(map(str.isalpha, runs)):
            yield from runs
        else:
            for run in runs:
                if run.isalpha():
                    yield run
                else:
                    yield from _WORD.findall(run)
        at = cut


def log(message: str) -> None:
    """A message for the worker's log (the first 4 KiB are kept)."""
    host.log(str(message))


def counter(name: str, delta: int = 1) -> None:
    """Adds ``delta`` to the job counter ``name``."""
    host.counter(name, delta)


def _bytes(value) -> bytes:
    if isinstance(value, bytes):
        return value
    if isinstance(value, str):
        return value.encode("utf-8", "surrogatepass")
    if isinstance(value, (bytearray, memoryview)):
        return bytes(value)
    raise TypeError(
        f"keys and values must be str or bytes, not {type(value).__name__}: {value!r:.80}"
    )


def _fail(what: str) -> None:
    """Reports the exception being handled as the task's error; the host ends the call."""
    exc = sys.exc_info()[1]
    # Frames by file, line and function only: the traceback module would read the source
    # files, and the app has no files (stubbed WASI: reading one traps).
    frames = []
    tb = exc.__traceback__
    while tb is not None:
        code = tb.tb_frame.f_code
        frames.append(f"  {code.co_filename}:{tb.tb_lineno} in {code.co_name}")
        tb = tb.tb_next
    trace = "\n".join(frames)
    host.fail(f"{what} raised {type(exc).__name__}: {exc}\n{trace}")
    raise SystemExit(1)  # not reached: fail does not return


def _encode_records(pairs) -> bytes:
    out = []
    push = out.append
    for key, value in pairs:
        key, value = _bytes(key), _bytes(value)
        push(_pack_len(len(key)))
        push(key)
        push(_pack_len(len(value)))
        push(value)
    return b"".join(out)


def _decode_groups(buf: bytes):
    """Yields ``(key, values)`` for each group of a reduce batch."""
    view = memoryview(buf)
    at, end = 0, len(buf)
    while at < end:
        (n,) = _unpack_len(buf, at)
        key = str(view[at + 4 : at + 4 + n], "utf-8", "replace")
        at += 4 + n
        (count,) = _unpack_len(buf, at)
        at += 4
        values = []
        for _ in range(count):
            (n,) = _unpack_len(buf, at)
            values.append(str(view[at + 4 : at + 4 + n], "utf-8", "replace"))
            at += 4 + n
        yield key, values


def app(map_fn, reduce_fn):
    """The class componentize-py exports for the world ``app``, calling ``map_fn`` and
    ``reduce_fn``. Assign it to ``WitWorld`` in the app's module."""

    class WitWorld:
        def map(self, name: str, contents: bytes) -> bytes:
            try:
                return _encode_records(map_fn(name, contents) or ())
            except BaseException:
                _fail("map")

        def reduce(self, groups: bytes) -> bytes:
            try:
                out = []
                for key, values in _decode_groups(groups):
                    value = _bytes(reduce_fn(key, values))
                    out.append(_pack_len(len(value)))
                    out.append(value)
                return b"".join(out)
            except BaseException:
                _fail("reduce")

    return WitWorld
