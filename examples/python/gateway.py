#!/usr/bin/python3
# SPDX-License-Identifier: MIT
"""gateway.py: an inbound MX gateway in Python on libmxgw, whose recipient
policy is a Python function reading a SQLite table.

    gateway.py --listen 127.0.0.1:2525 --lmtp 127.0.0.1:24 \
               --db users.sqlite --spool /var/spool/mxgw-py [--dns-server IP:PORT]

The table is `CREATE TABLE recipients (address TEXT PRIMARY KEY, active
INTEGER NOT NULL DEFAULT 1)`. RCPT TO for an address that is not listed
(or not active) gets 550 5.1.1; a failure of the policy (SQLite locked,
a bug raising an exception) gets 451 4.3.0 and is logged, never a crash.
Accepted messages go through the durable queue and are delivered by LMTP.

Two engines:
  --engine server   (default when the library has it) libmxgw's server:
                    its event loops, queue, delivery thread and policy
                    worker threads; the policy function runs on a worker.
  --engine asyncio  the same gateway written on the sans-IO session
                    engine: asyncio streams, the policy in an executor,
                    each message committed to the queue, then delivered by
                    LMTP (libmxgw's blocking driver, in an executor).
It prints "listening on ADDR:PORT" once ready, and exits on SIGTERM/SIGINT
after draining.
"""
import argparse
import asyncio
import logging
import signal
import sqlite3
import sys
import threading

import mxgw

log = logging.getLogger("gateway")


class RecipientTable:
    """The recipient policy: a lookup in SQLite. One connection per thread
    (sqlite3 objects must stay on their thread)."""

    def __init__(self, path):
        self.path = path
        self.local = threading.local()

    def _db(self):
        db = getattr(self.local, "db", None)
        if db is None:
            db = self.local.db = sqlite3.connect(self.path, timeout=5)
        return db

    def known(self, address):
        row = self._db().execute(
            "SELECT active FROM recipients WHERE address = ? COLLATE NOCASE",
            (address,)).fetchone()
        return bool(row and row[0])

    def policy(self, rcpt):
        """None to accept, or an SMTP reply (code, enhanced code, text)."""
        if self.known(rcpt):
            return None
        return (550, "5.1.1", f"<{rcpt}>: Recipient address rejected: "
                              "User unknown in relay recipient table")


# ---------------------------------------------------------------------------
# Engine 1: libmxgw's server with a Python policy callback
# ---------------------------------------------------------------------------
def run_server(args, table):
    host, port = args.listen.rsplit(":", 1)
    cfg = mxgw.ServerConfig(hostname=args.hostname, spool_dir=args.spool,
                            policy_workers=4, queue_sync=int(not args.no_fsync))
    if args.dns_server:
        cfg.set("dns_servers", args.dns_server)
        cfg.set("spf", 1)
    cfg.add_listener(host.strip("[]"), int(port), "smtp")
    cfg.add_backend(args.lmtp)
    cfg.set_deliver("poll_ms", 200)
    cfg.set_log(lambda level, line: log.log(10 + 10 * min(level, 4), "%s", line))

    @cfg.on_rcpt
    def rcpt(req):  # runs on a policy worker thread; may block
        return table.policy(req.rcpt)

    # The C server wants one owner thread for create/start/run/free, and
    # Python runs signal handlers only on the main thread between bytecodes
    # (never while it waits inside srv.run()): so the server runs on a
    # thread of its own and the main thread waits for the signal.
    signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGTERM, signal.SIGINT})
    with mxgw.Server.background(cfg, drain_ms=5000) as srv:
        print(f"listening on {host}:{srv.listener_port(0)}", flush=True)
        signal.sigwait({signal.SIGTERM, signal.SIGINT})
        log.info("signal received: draining")
    cfg.close()


# ---------------------------------------------------------------------------
# Engine 2: the session engine on asyncio
# ---------------------------------------------------------------------------
class AsyncGateway:
    def __init__(self, args, table):
        self.args, self.table = args, table
        self.cfg = mxgw.SessionConfig(hostname=args.hostname)
        # the journal: a small message is one append to a journal segment
        # (no body file of its own; deliver_due reads it with open_body())
        self.queue = mxgw.Queue(args.spool, sync=int(not args.no_fsync),
                                async_workers=0, journal=1)
        self.spf = None
        if args.dns_server:
            self.resolver = mxgw.Resolver.ares([args.dns_server])
            self.spf = mxgw.Spf(self.resolver, receiver=args.hostname)
        self.lmtp = mxgw.LmtpConnection(args.lmtp)
        self.wake = asyncio.Event()

    async def client(self, reader, writer):
        loop = asyncio.get_running_loop()
        peer = writer.get_extra_info("peername")
        body, spf_json = bytearray(), None
        pending, at_eof = b"", False
        with mxgw.Session(self.cfg, peer=(peer[0], peer[1])) as s:
            s.start()
            while True:
                for ev in s.events():
                    if ev == mxgw.Event.MAIL and self.spf:
                        chk = await self.spf.check_async(s.peer_addr, s.helo,
                                                         s.mail_from)
                        with chk:
                            code, enh, text = chk.reply()
                            spf_json = chk.json_text()
                        s.reply(code, enh, text) if code else s.accept()
                    elif ev == mxgw.Event.RCPT:
                        try:
                            ans = await loop.run_in_executor(None, self.table.policy,
                                                             s.rcpt)
                        except Exception:
                            log.exception("recipient policy failed")
                            ans = (451, "4.3.0", "Temporary policy failure")
                        s.reply(*ans) if ans else s.accept()
                    elif ev == mxgw.Event.BODY:
                        body += s.data
                    elif ev == mxgw.Event.MESSAGE_END:
                        msg = s.received_header() + bytes(body)
                        body.clear()
                        env = {"client_addr": s.peer_addr, "client_helo": s.helo or ""}
                        if spf_json:
                            env["spf_json"] = spf_json
                        sender, rcpts = s.mail_from, s.recipients()
                        try:
                            qid = await loop.run_in_executor(
                                None, lambda: self.queue.submit(sender, rcpts, msg, **env))
                        except mxgw.NoSpaceError:
                            s.reply(452, "4.3.1", "Insufficient system storage")
                        except mxgw.MxgwError:
                            log.exception("queue commit failed")
                            s.reply(451, "4.3.0", "Queue write error")
                        else:
                            s.reply(250, "2.0.0", f"Ok: queued as {qid}")
                            self.wake.set()
                    elif ev == mxgw.Event.MESSAGE_ABORT:
                        body.clear()
                    elif ev.is_decision:
                        s.accept()
                out = s.take_output()
                if out:
                    writer.write(out)
                    await writer.drain()
                if s.want & s.WANT_CLOSE:
                    break
                if pending:  # input the session could not take yet
                    pending = pending[s.feed(pending):]
                    continue
                if at_eof:
                    break
                dl = s.deadline
                timeout = None if dl < 0 else max(0, dl - mxgw.now_ms()) / 1000
                try:
                    data = await asyncio.wait_for(reader.read(65536), timeout)
                except asyncio.TimeoutError:
                    s.tick()
                    continue
                except ConnectionError:
                    s.abort()
                    continue
                if not data:
                    at_eof = True
                    s.eof()
                pending = data
        writer.close()

    def deliver_due(self):
        """One delivery pass (a worker thread): take, deliver, finish."""
        while True:
            e = self.queue.take()
            if e is None:
                return
            with e:
                rcpts = [r["addr"] for r in e.recipients]
                # the body where it lies: its own file, or a range of a
                # journal segment (a journal message has no body_path)
                with e.open_body() as body:
                    res = self.lmtp.deliver(e.sender, rcpts, body)
                out = []
                for i, r in enumerate(res):
                    state = "delivered" if r.ok else "deferred" if r.temporary else "failed"
                    out.append((i, state, r.code, r.enh, r.text))
                    log.info("%s: to=<%s>, status=%s (%d %s %s)", e.id, r.address,
                             state, r.code, r.enh, r.text)
                import time
                self.queue.finish(e, out, int(time.time()) + 60)

    async def delivery(self):
        loop = asyncio.get_running_loop()
        while True:
            try:
                await asyncio.wait_for(self.wake.wait(), 5)
            except asyncio.TimeoutError:
                pass
            self.wake.clear()
            try:
                await loop.run_in_executor(None, self.deliver_due)
            except Exception:
                log.exception("delivery pass failed")

    async def main(self):
        host, port = self.args.listen.rsplit(":", 1)
        server = await asyncio.start_server(self.client, host.strip("[]"), int(port))
        print(f"listening on {host}:{server.sockets[0].getsockname()[1]}", flush=True)
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        dl = asyncio.create_task(self.delivery())
        self.wake.set()
        await stop.wait()
        server.close()
        await server.wait_closed()
        dl.cancel()
        await loop.run_in_executor(None, self.deliver_due)
        self.lmtp.close()
        self.queue.close()


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--listen", default="127.0.0.1:2525")
    ap.add_argument("--lmtp", required=True, help="LMTP backend: host:port or unix:/path")
    ap.add_argument("--db", required=True, help="SQLite file with the recipients table")
    ap.add_argument("--spool", required=True)
    ap.add_argument("--hostname", default="mx.example.test")
    ap.add_argument("--dns-server", help="check SPF through this DNS server (IP:PORT)")
    ap.add_argument("--engine", choices=("server", "asyncio"),
                    default="server" if mxgw.server.AVAILABLE else "asyncio")
    ap.add_argument("--no-fsync", action="store_true", help="tests only")
    ap.add_argument("-v", "--verbose", action="store_true")
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO,
                        format="%(asctime)s %(name)s %(levelname)s %(message)s",
                        stream=sys.stderr)
    table = RecipientTable(args.db)
    if args.engine == "server":
        if not mxgw.server.AVAILABLE:
            sys.exit("gateway.py: this libmxgw has no server; use --engine asyncio")
        run_server(args, table)
    else:
        asyncio.run(AsyncGateway(args, table).main())
    return 0


if __name__ == "__main__":
    sys.exit(main())
