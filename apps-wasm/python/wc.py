"""Word count, as the lab's wc.go and the Rust `wc` app: key = word, value = its number
of occurrences. The map counts its split's words itself (an in-mapper combiner), so a
split yields one record per distinct word and reduce sums partial counts."""

from collections import Counter

import mrapp


def map(name: str, contents: bytes):
    return ((word, str(n)) for word, n in Counter(mrapp.words(contents)).items())


def reduce(key: str, counts: list[str]) -> str:
    return str(sum(int(c) for c in counts))


WitWorld = mrapp.app(map, reduce)
