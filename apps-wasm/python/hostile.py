"""A hostile Python app, for the sandbox tests: what its map does depends on the first
line of its input. Every case must end as a clear task failure naming the app, with the
worker alive for the next job.

Unlike the other Python apps it is built without stubbed WASI: it imports WASI 0.2, and
the worker's WASI has nothing behind it.

- ``PASSWD``: reads /etc/passwd (there is no file system: no folder is preopened);
- ``SOCKET``: connects to 127.0.0.1:80 (there are no sockets: this CPython has no
  ``socket`` module, and the worker's WASI would refuse one);
- ``LOOP``: loops forever (the task's time limit);
- ``ALLOC``: allocates forever (the task's memory limit);
- ``RAISE``: raises an exception;
- ``ENV``: emits its environment, ``CLOCK``: the wall clock's seconds (both must be empty
  and zero: the sandbox has neither);
- anything else: word count, as ``wc``.
"""

import os
import time
from collections import Counter

import mrapp


def map(name: str, contents: bytes):
    command = contents.split(b"\n", 1)[0].strip()
    if command == b"PASSWD":
        with open("/etc/passwd") as f:
            return [("passwd", f.read())]
    if command == b"SOCKET":
        import socket

        socket.create_connection(("127.0.0.1", 80), timeout=1)
        return [("socket", "connected")]
    if command == b"LOOP":
        n = 0
        while True:
            n += 1
    if command == b"ALLOC":
        hoard = []
        while True:
            hoard.append(bytearray(1 << 20))
    if command == b"ENV":
        return [("env", repr(sorted(os.environ.items())))]
    if command == b"CLOCK":
        return [("clock", str(int(time.time())))]
    if command == b"RAISE":
        raise ValueError(f"poisoned input {name}")
    return ((word, str(n)) for word, n in Counter(mrapp.words(contents)).items())


def reduce(key: str, counts: list[str]) -> str:
    if key in ("env", "clock"):
        return counts[0]
    return str(sum(int(c) for c in counts))


WitWorld = mrapp.app(map, reduce)
