#!/usr/bin/python3
# SPDX-License-Identifier: MIT
# Writes the seed corpus of fuzz_session (tests/fuzz/corpus/session/): real
# SMTP dialogues, each behind the 8-byte header that fuzz_session.c reads as
# its configuration and PRNG seed. Run it after changing the header layout;
# the generated files are checked in. Crash reproducers saved in the corpus
# directory by hand (crash-*, regress-*) are left alone.
#
# Header (see make_config() in fuzz_session.c):
#   h0 bits: 0 BARE_NORMALIZE, 1 STARTTLS, 2 AUTH, 3 AUTH_PLAINTEXT,
#            4 CHUNKING off, 5 REQUIRE_TLS, 6 REQUIRE_AUTH, 7 PIPELINING off
#   h1 bits: 0 small MAX_MESSAGE_SIZE (1 + 4*h3), 1 small MAX_RECIPIENTS,
#            2 small MAX_MESSAGES, 3 small line and buffers, 4 MAX_TEXT_LINE
#            20+h3%64 (bit 5: unlimited), 6 small error limits, 7 failing
#            allocator (allocation 1 + h4%48 fails; h5 bit 0: and all later)
#   h2 bits: 0 SMTPUTF8 off, 1 DSN off, 2 8BITMIME off, 3 REJECT_HTTP off,
#            4 IMPLICIT_TLS, 5 short timeouts, 6 HOSTNAME, 7 GREETING
#   h3: limit parameter   h4, h5: allocator   h6: log hook, peer   h7: seed
import base64
import os

HERE = os.path.dirname(os.path.abspath(__file__))
OUT = os.path.join(HERE, "corpus", "session")

NORMALIZE, STARTTLS, AUTH, AUTH_PLAIN, NO_CHUNKING, REQ_TLS, REQ_AUTH, NO_PIPE = (
    1, 2, 4, 8, 16, 32, 64, 128)
SMALL_SIZE, SMALL_RCPT, SMALL_MSGS, SMALL_BUF, TEXT_LINE, TEXT_UNLIM, SMALL_ERR, FAILMEM = (
    1, 2, 4, 8, 16, 32, 64, 128)
NO_UTF8, NO_DSN, NO_8BIT, NO_HTTP, IMPLICIT_TLS, SHORT_TMO, HOSTNAME, GREETING = (
    1, 2, 4, 8, 16, 32, 64, 128)


def hdr(h0=0, h1=0, h2=0, h3=0, h4=0, h5=0, h6=1, h7=0):
    return bytes([h0, h1, h2, h3, h4, h5, h6, h7])


def b64(s):
    return base64.b64encode(s).decode()


ENV = b"MAIL FROM:<alice@example.org>\r\nRCPT TO:<bob@example.test>\r\nDATA\r\n"
BODY = (b"From: alice@example.org\r\nTo: bob@example.test\r\nSubject: hi\r\n\r\n"
        b"Hello Bob,\r\n..a line that starts with a dot\r\n.\r\n")

seeds = {
    "basic": hdr() + b"EHLO client.example.org\r\n" + ENV + BODY + b"QUIT\r\n",
    "helo_plain": hdr(h2=HOSTNAME | GREETING) + b"HELO client\r\nMAIL FROM:<a@b.example>\r\n"
        b"RCPT TO:<c@d.example>\r\nDATA\r\nshort body\r\n.\r\nQUIT\r\n",
    "pipelined_two_messages": hdr(h7=3) + b"EHLO c.example\r\n" + ENV + BODY + ENV
        + b"second message\r\n.\r\nRSET\r\nNOOP\r\nQUIT\r\n",
    "pipelined_rejects": hdr(h7=9) + b"EHLO c.example\r\nMAIL FROM:<>\r\n"
        + b"".join(b"RCPT TO:<r%d@example.test>\r\n" % i for i in range(6))
        + b"DATA\r\nbody\r\n.\r\nQUIT\r\n",
    "bdat_chunks": hdr(h7=5) + b"EHLO c.example\r\nMAIL FROM:<a@example.org> BODY=BINARYMIME\r\n"
        b"RCPT TO:<b@example.test>\r\nBDAT 12\r\nhello\nworld\rBDAT 7 LAST\r\n\r\n.\r\n\x00\x01QUIT\r\n",
    "bdat_zero_last": hdr(h7=6) + b"EHLO c.example\r\nMAIL FROM:<a@example.org>\r\n"
        b"RCPT TO:<b@example.test>\r\nBDAT 0 LAST\r\nBDAT 3\r\nabcDATA\r\nQUIT\r\n",
    "bdat_size_limit": hdr(h1=SMALL_SIZE, h3=4, h7=7) + b"EHLO c\r\nMAIL FROM:<a@example.org> SIZE=10\r\n"
        b"MAIL FROM:<a@example.org>\r\nRCPT TO:<b@example.test>\r\nBDAT 40\r\n"
        + b"x" * 40 + b"BDAT 2 LAST\r\nyyQUIT\r\n",
    "auth_plain_inline": hdr(h0=AUTH | AUTH_PLAIN, h7=8) + b"EHLO c.example\r\nAUTH PLAIN "
        + b64(b"\x00user\x00secret").encode() + b"\r\nMAIL FROM:<u@example.org> AUTH=u+40example.org\r\n"
        b"RCPT TO:<x@example.test>\r\nDATA\r\nauthenticated\r\n.\r\nQUIT\r\n",
    "auth_login": hdr(h0=AUTH | AUTH_PLAIN | REQ_AUTH, h7=10) + b"EHLO c.example\r\nMAIL FROM:<a@b.example>\r\n"
        b"AUTH LOGIN\r\n" + b64(b"user").encode() + b"\r\n" + b64(b"pass").encode()
        + b"\r\nAUTH PLAIN\r\n" + b64(b"authz\x00user\x00pw").encode() + b"\r\nAUTH PLAIN\r\n*\r\n"
        b"AUTH LOGIN " + b64(b"u2").encode() + b"\r\n=\r\nAUTH CRAM-MD5\r\nAUTH PLAIN !!!\r\nQUIT\r\n",
    "auth_requires_tls": hdr(h0=AUTH | STARTTLS, h7=11) + b"EHLO c\r\nAUTH PLAIN "
        + b64(b"\x00u\x00p").encode() + b"\r\nSTARTTLS\r\nEHLO c\r\nAUTH PLAIN "
        + b64(b"\x00u\x00p").encode() + b"\r\nQUIT\r\n",
    "starttls_pipelined_plaintext": hdr(h0=STARTTLS, h7=12) + b"EHLO c.example\r\nSTARTTLS\r\n"
        b"MAIL FROM:<evil@example.org>\r\nRCPT TO:<victim@example.test>\r\n"
        b"EHLO c.example\r\nMAIL FROM:<good@example.org>\r\nRCPT TO:<b@example.test>\r\n"
        b"DATA\r\nafter tls\r\n.\r\nQUIT\r\n",
    "starttls_required": hdr(h0=STARTTLS | REQ_TLS, h7=13) + b"EHLO c\r\nMAIL FROM:<a@b.example>\r\n"
        b"STARTTLS extra\r\nSTARTTLS\r\nEHLO c\r\nSTARTTLS\r\nMAIL FROM:<a@b.example>\r\nQUIT\r\n",
    "smuggle_reject": hdr(h7=14) + b"EHLO c.example\r\n" + ENV
        + b"body\n.\nMAIL FROM:<s1@example.org>\r\n"
        b"x\n.\r\nMAIL FROM:<s2@example.org>\r\n"
        b"y\r.\rMAIL FROM:<s3@example.org>\r\n"
        b"z\r\n.\nMAIL FROM:<s4@example.org>\r\n"
        b"w\r\n.\rMAIL FROM:<s5@example.org>\r\n"
        b"v\n.\rRCPT TO:<s6@example.test>\r\n\r\n.\r\nQUIT\r\n",
    "smuggle_normalize": hdr(h0=NORMALIZE, h7=15) + b"EHLO c.example\r\n" + ENV
        + b"body\n.\nMAIL FROM:<s1@example.org>\r\n"
        b"x\n.\r\nMAIL FROM:<s2@example.org>\r\n"
        b"y\r.\rz\r\n.\nw\r\n.\rv\n.\r\r\n.\r\nQUIT\n",
    "bare_newlines_commands": hdr(h7=16) + b"EHLO c\nEHLO c\rNOOP\r\nHELO\r\r\nRSET\n\rQUIT\r\n",
    "bare_newlines_normalize": hdr(h0=NORMALIZE, h7=17) + b"EHLO c\nMAIL FROM:<a@b.example>\r"
        b"RCPT TO:<c@d.example>\nDATA\nline one\nline two\r.\r\n.\nQUIT\n",
    "dsn_params": hdr(h7=18) + b"EHLO c.example\r\nMAIL FROM:<a@example.org> RET=HDRS ENVID=abc+2Bdef+3D "
        b"SIZE=120 BODY=8BITMIME\r\nRCPT TO:<x@example.test> NOTIFY=SUCCESS,DELAY "
        b"ORCPT=rfc822;x+40example.test\r\nRCPT TO:<y@example.test> NOTIFY=NEVER\r\n"
        b"RCPT TO:<z@example.test> NOTIFY=NEVER,SUCCESS\r\nMAIL FROM:<b@example.org> RET=BAD\r\n"
        b"DATA\r\n8bit \xc3\xa9\r\n.\r\nQUIT\r\n",
    "smtputf8": hdr(h7=19) + "EHLO c.example\r\nMAIL FROM:<jöran@bücher.example> SMTPUTF8\r\n"
        "RCPT TO:<用户@例子.测试>\r\nRCPT TO:<ascii@example.test>\r\nDATA\r\nSubject: ünïcödé\r\n\r\n"
        "x\r\n.\r\nMAIL FROM:<jöran@bücher.example>\r\nQUIT\r\n".encode(),
    "paths": hdr(h7=20) + b"EHLO [192.0.2.1]\r\nMAIL FROM:<@relay.example,@r2.example:a@b.example>\r\n"
        b"RCPT TO:<\"quoted local\\\"part\"@example.test>\r\nRCPT TO:<user@[192.0.2.7]>\r\n"
        b"RCPT TO:<user@[IPv6:2001:db8::7]>\r\nRCPT TO:<Postmaster>\r\nRCPT TO:<bad@>\r\n"
        b"RCPT TO:bare@example.test\r\nRCPT TO:<a@b..c>\r\nRCPT TO:<a@-b.example>\r\nRSET\r\n"
        b"MAIL FROM:<>\r\nMAIL FROM:<x@y.example>\r\nMAIL FROM:<x@y.example> FOO=BAR\r\nQUIT\r\n",
    "limits_lines": hdr(h1=TEXT_LINE | SMALL_BUF, h3=40, h7=21) + b"EHLO c\r\n" + ENV
        + b"short\r\n" + b"L" * 2000 + b"\r\n.\r\nNOOP " + b"A" * 3000 + b"\r\nQUIT\r\n",
    "limits_counts": hdr(h1=SMALL_RCPT | SMALL_MSGS | SMALL_ERR, h3=0x15, h7=22) + b"EHLO c\r\n"
        + b"MAIL FROM:<a@b.example>\r\n" + b"".join(b"RCPT TO:<r%d@example.test>\r\n" % i for i in range(5))
        + b"DATA\r\nx\r\n.\r\n" + ENV + b"y\r\n.\r\n" + ENV + b"z\r\n.\r\nFOO\r\nBAR\r\nBAZ\r\n"
        b"VRFY x\r\nEXPN y\r\nHELP\r\nNOOP\r\nQUIT\r\n",
    "size_limit_data": hdr(h1=SMALL_SIZE, h3=10, h7=23) + b"EHLO c\r\nMAIL FROM:<a@b.example> SIZE=99999\r\n"
        + ENV + b"A" * 70 + b"\r\n" + b"B" * 70 + b"\r\n.\r\n" + ENV + b"tiny\r\n.\r\nQUIT\r\n",
    "http_request": hdr(h7=24) + b"GET / HTTP/1.1\r\nHost: mx.example.test\r\n\r\n",
    "http_after_ehlo": hdr(h2=NO_HTTP, h7=25) + b"EHLO c\r\nPOST /x HTTP/1.0\r\nCONNECT a:25 HTTP/1.1\r\nQUIT\r\n",
    "timeouts": hdr(h2=SHORT_TMO, h7=26) + b"EHLO c\r\n" + ENV + b"partial body without end",
    "implicit_tls_auth": hdr(h0=AUTH | STARTTLS | REQ_AUTH, h2=IMPLICIT_TLS, h7=27) + b"EHLO c\r\n"
        b"STARTTLS\r\nAUTH PLAIN " + b64(b"\x00user\x00pw").encode() + b"\r\nMAIL FROM:<a@b.example>\r\n"
        b"RCPT TO:<c@d.example>\r\nBDAT 4 LAST\r\nabcdQUIT\r\n",
    "no_extensions": hdr(h0=NO_CHUNKING | NO_PIPE, h2=NO_UTF8 | NO_DSN | NO_8BIT, h7=28)
        + b"EHLO c\r\nMAIL FROM:<a@b.example> BODY=8BITMIME SMTPUTF8\r\nMAIL FROM:<a@b.example> RET=FULL\r\n"
        b"MAIL FROM:<a@b.example>\r\nRCPT TO:<c@d.example>\r\nBDAT 1 LAST\r\nx\r\nDATA\r\nx\r\n.\r\nQUIT\r\n",
    "binary_junk": hdr(h7=29) + b"\x00\xff\xfe\r\nEHLO \x00c\r\n\x80\x81\x82\r\nMAIL FROM:<a\x00@b>\r\n"
        b"\r\n\r\n \r\nehlo lowercase.example\r\nmail from:<a@b.example>\r\nrcpt to:<c@d.example>\r\n"
        b"data\r\n\x00binary\x00\r\n.\r\nquit\r\n",
    "failmalloc_once": hdr(h1=FAILMEM, h4=5, h7=30) + b"EHLO c.example\r\n" + ENV + BODY + ENV + BODY + b"QUIT\r\n",
    "failmalloc_sticky": hdr(h1=FAILMEM, h4=9, h5=1, h7=31) + b"EHLO c.example\r\n" + ENV + BODY + b"QUIT\r\n",
    "small_output_buffer": hdr(h1=SMALL_BUF, h6=0, h7=32) + b"EHLO c\r\n" * 60 + b"HELP\r\n" * 40 + b"QUIT\r\n",
}

os.makedirs(OUT, exist_ok=True)
for name, data in seeds.items():
    with open(os.path.join(OUT, name), "wb") as f:
        f.write(data)
print("wrote %d seeds to %s" % (len(seeds), OUT))
