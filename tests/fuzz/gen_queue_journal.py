#!/usr/bin/python3
# SPDX-License-Identifier: MIT
# Writes the seed corpus of fuzz_queue_journal (corpus/queue_journal/):
# journal segments as mxgw_queue_journal.c writes them, behind the 3-octet
# header that fuzz_queue_journal.c reads. Run it after changing the record
# format; the generated files are checked in. Files named regress-* or
# crash-* are left alone.
#
# Input header: h0 bit 0 two segments (h1 | h2 << 8 octets for segment 1,
# the rest for segment 2), bit 1 the first record's ID also in deferred/,
# bit 2 the target fixes the CRCs (the "fixcrc-" seeds carry CRC 0 there).
# Record: 64-octet header "MXJ1", u32 type (1 message, 2 done, 3 moved),
# u32 meta_len, u32 CRC-32C (of the header with this field 0, the metadata
# and the body), u64 body_len, char id[32] NUL-padded, u64 0; little-endian.
import json
import os
import struct

HERE = os.path.dirname(os.path.abspath(__file__))
OUT = os.path.join(HERE, "corpus", "queue_journal")

MSG, DONE, MOVED = 1, 2, 3


def crc32c(data, crc=0):
    crc ^= 0xFFFFFFFF
    for b in data:
        crc ^= b
        for _ in range(8):
            crc = (crc >> 1) ^ (0x82F63B78 & -(crc & 1))
    return crc ^ 0xFFFFFFFF


def record(rtype, qid, meta=b"", body=b"", crc_xor=0, nocrc=False):
    hdr = bytearray(64)
    hdr[0:4] = b"MXJ1"
    struct.pack_into("<IIIQ", hdr, 4, rtype, len(meta), 0, len(body))
    hdr[24:24 + len(qid)] = qid.encode()
    crc = crc32c(bytes(hdr) + meta + body) ^ crc_xor
    struct.pack_into("<I", hdr, 12, 0 if nocrc else crc)
    return bytes(hdr) + meta + body


def meta(qid, rcpts=("alice@example.org",), **extra):
    m = {"id": qid, "sender": "bob@example.net", "envid": "",
         "ret": "", "body": "7BIT", "smtputf8": False,
         "arrival": 1790000000, "attempts": 0, "next_attempt": 0,
         "client": {"addr": "192.0.2.1", "helo": "mx.example.net"},
         "recipients": [{"addr": a, "orcpt": "", "notify": 0,
                         "state": "pending", "code": 0, "enhanced": "",
                         "text": ""} for a in rcpts]}
    m.update(extra)
    return json.dumps(m, separators=(",", ":")).encode()


def msg(qid, body, **extra):
    return record(MSG, qid, meta(qid, **extra), body)


def one(seg, flags=0):
    return bytes([flags, 0, 0]) + seg


def two(seg1, seg2, flags=0):
    return bytes([flags | 1, len(seg1) & 255, len(seg1) >> 8]) + seg1 + seg2


A, B, C, D = "0A1B2C3D4E5F6A7B", "0A1B2C3D4E5F6A7C", "0A1B2C3D4E5F6A7D", \
    "0A1B2C3D4E5F6A7E"
BODY = b"Subject: hi\r\n\r\nhello\r\n"


def seeds():
    m_a, m_b, m_c = msg(A, BODY), msg(B, b""), msg(
        C, b"x" * 100 + b"\r\n", rcpts=("a@example.org", "b@example.org"),
        tls={"version": "TLSv1.3"}, spf={"result": "pass"})
    yield "three-messages", one(m_a + m_b + m_c)
    yield "done-and-moved", one(m_a + m_b + record(DONE, A) + m_c +
                                record(MOVED, C))
    yield "torn-tail", one(m_a + m_b + m_c[:len(m_c) - 7])
    yield "torn-header", one(m_a + m_b[:40])
    yield "bad-crc", one(m_a + record(MSG, B, meta(B), BODY, crc_xor=1) + m_c)
    yield "bad-meta", one(m_a + record(MSG, B, b'{"id":"' + B.encode() +
                                       b'","sender":""}', BODY) + m_c)
    yield "meta-id-mismatch", one(record(MSG, D, meta(A), BODY) + m_b)
    yield "two-segments-done-later", two(m_a + m_b, m_c + record(DONE, A) +
                                         record(MOVED, B))
    yield "two-segments-torn-first", two(m_a + m_b[:70], m_c + record(DONE, A))
    yield "duplicate-id", one(m_a + msg(A, b"second\r\n") + record(DONE, A))
    yield "stale-deferred", one(m_a + m_b, flags=2)
    yield "empty", one(b"")
    # CRCs left 0: the target computes them (h0 bit 2), mutations survive
    FIX = 4
    yield "fixcrc-three-messages", one(
        record(MSG, A, meta(A), BODY, nocrc=True) +
        record(MSG, B, meta(B, tls={"cipher": "x"}), b"", nocrc=True) +
        record(DONE, A, nocrc=True) +
        record(MSG, C, b'{"id":"' + C.encode() + b'","sender":"",'
               b'"recipients":[{"addr":"a@b","state":"pending"}]}', b"z",
               nocrc=True), flags=FIX)
    yield "fixcrc-two-segments", two(
        record(MSG, A, meta(A), BODY, nocrc=True) +
        record(MSG, B, meta(B), BODY, nocrc=True),
        record(MOVED, B, nocrc=True) + record(MSG, D, meta(D), b"", nocrc=True),
        flags=FIX | 2)


def main():
    os.makedirs(OUT, exist_ok=True)
    for name in os.listdir(OUT):
        if not name.startswith(("regress-", "crash-")):
            os.unlink(os.path.join(OUT, name))
    for name, data in seeds():
        with open(os.path.join(OUT, name), "wb") as f:
            f.write(data)


if __name__ == "__main__":
    main()
