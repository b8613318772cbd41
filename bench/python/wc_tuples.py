"""Figure 12 of `make bench` only: wc-py's map (apps-wasm/python/wc.py, the same words
and the same Counter) returning its records as a WIT ``list<tuple<list<u8>, list<u8>>>``
(bench/wit/tuples) instead of mrapp's flat buffer. Not an app of mr: its world is not
mr's, and its reduce is never called."""

from collections import Counter

import mrapp


class WitWorld:
    def map(self, name: str, contents: bytes) -> list[tuple[bytes, bytes]]:
        return [
            (word.encode("utf-8", "surrogatepass"), str(n).encode())
            for word, n in Counter(mrapp.words(contents)).items()
        ]

    def reduce(self, groups: bytes) -> bytes:
        return b""
