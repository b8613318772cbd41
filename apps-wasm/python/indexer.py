"""Inverted index, as the lab's indexer.go and the Rust `indexer` app: key = word,
value = "{n} {doc1,doc2,...}" with the distinct documents holding the word, sorted."""

import mrapp


def map(name: str, contents: bytes):
    return ((word, name) for word in set(mrapp.words(contents)))


def reduce(key: str, docs: list[str]) -> str:
    # A document split into several parts reaches reduce once per part.
    docs = sorted(set(docs))
    return f"{len(docs)} {','.join(docs)}"


WitWorld = mrapp.app(map, reduce)
