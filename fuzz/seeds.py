#!/usr/bin/env python3
"""Writes the committed seed corpora of the fuzz targets (deterministic; run from anywhere).

corpus/shuffle_reader/     small valid intermediate files (format: shuffle/src/lib.rs),
                           concatenations of 2-3 of them (the target merges the pieces),
                           and one valid file with non-minimal varints.
corpus/submit_validation/  job requests, encoded the way `arbitrary` 1.x decodes the
                           target's `Submission { app, inputs, n_reduce, split_bytes }`.
"""
import os
import struct
import zlib

HERE = os.path.dirname(os.path.abspath(__file__))


def varint(v):
    out = bytearray()
    while v >= 0x80:
        out.append(v & 0x7F | 0x80)
        v >>= 7
    out.append(v)
    return bytes(out)


def shuffle_file(records, key_len_varint=varint):
    body = bytearray(b"MRI1")
    for k, v in sorted(records, key=lambda r: r[0]):
        body += key_len_varint(len(k) + 1) + varint(len(v)) + k + v
    body += b"\x00" + struct.pack("<Q", len(records))
    return bytes(body) + struct.pack("<I", zlib.crc32(body))


def non_minimal(v):
    """The varint of `v` padded with one extra continuation byte (0x80 .. 0x00)."""
    b = bytearray(varint(v))
    b[-1] |= 0x80
    return bytes(b) + b"\x00"


def submission(app, inputs, n_reduce, split_bytes):
    """arbitrary 1.x: a String is a length then its bytes; lengths are taken from the END
    of the input (1 byte while at most 256 bytes remain), bytes from the front; a Vec is
    elements each preceded by a 'continue' byte (low bit), then a 0 byte; ints are LE."""
    front = bytearray(app.encode())
    sizes = [len(app.encode())]
    for s in inputs:
        front += b"\x01" + s.encode()
        sizes.append(len(s.encode()))
    front += b"\x00" + struct.pack("<I", n_reduce) + struct.pack("<Q", split_bytes)
    data = bytes(front) + bytes(reversed(sizes))
    assert len(data) <= 256, "keep seeds short: one length byte per string"
    return data


def write(target, name, data):
    folder = os.path.join(HERE, "corpus", target)
    os.makedirs(folder, exist_ok=True)
    with open(os.path.join(folder, name), "wb") as f:
        f.write(data)


def main():
    wc = [(w.encode(), b"1") for w in "the quick brown fox jumps over the lazy dog the end".split()]
    files = {
        "empty": shuffle_file([]),
        "wc": shuffle_file(wc),
        "one": shuffle_file([(b"k", b"v")]),
        "edge-keys": shuffle_file(
            [(b"", b""), (b"", b"x"), (b"\x00", b""), (b"\xff\xfe", b"\x00" * 3), (b"a" * 130, b"")]
        ),
        "long-value": shuffle_file([(b"key", bytes(range(200)))]),
        "index": shuffle_file([(b"apple", b"pg-1.txt"), (b"pear", b"pg-1.txt,pg-2.txt")]),
    }
    for name, data in files.items():
        write("shuffle_reader", name, data)
    write("shuffle_reader", "merge-2", files["wc"] + shuffle_file([(b"fox", b"2"), (b"zebra", b"1")]))
    write(
        "shuffle_reader",
        "merge-3",
        files["one"] + files["index"] + shuffle_file([(b"k", b"w"), (b"pear", b"x")]),
    )
    write("shuffle_reader", "non-minimal-varint", shuffle_file([(b"a", b"1"), (b"b", b"2")], non_minimal))

    requests = {
        "wc-one": ("wc", ["input/a.txt"], 10, 0),
        "wc-glob": ("wc", ["input/*.txt"], 3, 1),
        "wc-recursive": ("wc", ["input/**/*.txt", "./input//b.txt"], 1, 4096),
        "wc-classes": ("wc", ["input/[ab].txt", "input/?.txt", "input/sub/*"], 10000, 7),
        "wc-hidden": ("wc", ["input/.hidden", "input/.*"], 2, 0),
        "escape-link": ("wc", ["input/out"], 1, 0),
        "escape-glob": ("wc", ["input/o*", "input/outdir/*"], 1, 0),
        "escape-dotdot": ("wc", ["input/../../secret", "/etc/passwd"], 1, 0),
        "bad-n-reduce": ("wc", ["input/a.txt"], 10001, 0),
        "unknown-app": ("indexer", ["input/a.txt"], 4, 0),
        "bad-app": ("../apps/wc", ["input/a.txt"], 4, 0),
    }
    for name, args in requests.items():
        write("submit_validation", name, submission(*args))


if __name__ == "__main__":
    main()
