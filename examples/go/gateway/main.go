// SPDX-License-Identifier: MIT

// gateway: an inbound MX gateway whose recipient policy is a Go function.
// libmxgw does SMTP, the durable queue and LMTP delivery on its own
// threads; this program adds a recipient table (a text file with one
// address per line, re-read when it changes) and a sender check.
//
//	gateway --listen 127.0.0.1:2525 --hostname mx.example.test \
//	    --domain example.test --users users.txt \
//	    --backend 127.0.0.1:24 --spool /var/spool/mxgw-go
//
// SIGINT/SIGTERM drain (sessions finish their transaction).
package main

import (
	"bufio"
	"context"
	"flag"
	"fmt"
	"io"
	"log"
	"net"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"libmxgw.org/mxgw"
)

type listFlag []string

func (l *listFlag) String() string     { return strings.Join(*l, ",") }
func (l *listFlag) Set(v string) error { *l = append(*l, v); return nil }

type options struct {
	listen, hostname, spool, users, dnsServer string
	domains, backends                         listFlag
	spf, noSync                               bool
	ready                                     func(port int) // tests
}

// recipients is the recipient table: reloaded from its file when the
// file's modification time changes (checked at most once a second).
type recipients struct {
	mu      sync.Mutex
	path    string
	mtime   time.Time
	checked time.Time
	set     map[string]bool
}

func (r *recipients) load() error {
	st, err := os.Stat(r.path)
	if err != nil {
		return err
	}
	if !st.ModTime().After(r.mtime) && r.set != nil {
		return nil
	}
	f, err := os.Open(r.path)
	if err != nil {
		return err
	}
	defer f.Close()
	set := map[string]bool{}
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if line != "" && !strings.HasPrefix(line, "#") {
			set[strings.ToLower(line)] = true
		}
	}
	if err := sc.Err(); err != nil {
		return err
	}
	r.set, r.mtime = set, st.ModTime()
	return nil
}

// known is the RCPT policy's lookup. It runs on a libmxgw policy worker
// and may block (a real gateway might ask a database here).
func (r *recipients) known(addr string) (bool, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if time.Since(r.checked) > time.Second {
		r.checked = time.Now()
		if err := r.load(); err != nil {
			return false, err
		}
	}
	return r.set[strings.ToLower(addr)], nil
}

func main() {
	var o options
	flag.StringVar(&o.listen, "listen", "127.0.0.1:2525", "address:port to accept SMTP on (port 0: any)")
	flag.StringVar(&o.hostname, "hostname", "localhost", "our host name (greeting, Received)")
	flag.StringVar(&o.spool, "spool", "var/spool-go", "queue directory")
	flag.StringVar(&o.users, "users", "", "recipient table: one address per line (required)")
	flag.StringVar(&o.dnsServer, "dns-server", "", "DNS server for SPF (IP[:PORT]); implies --spf")
	flag.Var(&o.domains, "domain", "accepted domain (repeatable)")
	flag.Var(&o.backends, "backend", "LMTP backend host:port or unix:/path (repeatable, required)")
	flag.BoolVar(&o.spf, "spf", false, "check SPF at MAIL FROM")
	flag.BoolVar(&o.noSync, "no-sync", false, "do not fsync the queue (tests only)")
	flag.Parse()
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, o, os.Stdout); err != nil {
		log.Fatal(err)
	}
}

func run(ctx context.Context, o options, logOut io.Writer) error {
	if o.users == "" || len(o.backends) == 0 {
		return fmt.Errorf("gateway: --users and --backend are required")
	}
	rcpts := &recipients{path: o.users}
	if err := rcpts.load(); err != nil {
		return fmt.Errorf("gateway: recipient table: %w", err)
	}
	host, portS, err := net.SplitHostPort(o.listen)
	if err != nil {
		return fmt.Errorf("gateway: --listen: %w", err)
	}
	port, _ := strconv.Atoi(portS)

	cfg, err := mxgw.NewServerConfig()
	if err != nil {
		return err
	}
	defer cfg.Close()
	var logMu sync.Mutex
	logf := func(format string, a ...any) {
		logMu.Lock()
		defer logMu.Unlock()
		fmt.Fprintf(logOut, "%s "+format+"\n", append([]any{time.Now().Format(time.RFC3339)}, a...)...)
	}
	steps := []func() error{
		func() error { return cfg.SetString(int(mxgw.OptHostname), o.hostname) },
		func() error { return cfg.SetString(int(mxgw.SrvOptSpoolDir), o.spool) },
		func() error { _, err := cfg.AddListener(host, port, mxgw.ListenSMTP); return err },
		func() error {
			// Dovecot's LMTP does not offer SMTPUTF8: do not advertise it,
			// or clients that always use it (Go's net/smtp) would bounce.
			return cfg.SetSessionOption(mxgw.OptSMTPUTF8, 0)
		},
		func() error {
			return cfg.SetLogger(func(level mxgw.LogLevel, line string) { logf("%s", line) })
		},
	}
	if o.noSync {
		steps = append(steps, func() error { return cfg.SetOption(mxgw.SrvOptQueueSync, 0) })
	}
	if o.spf || o.dnsServer != "" {
		steps = append(steps, func() error { return cfg.SetOption(mxgw.SrvOptSPF, 1) })
		if o.dnsServer != "" {
			steps = append(steps, func() error { return cfg.SetString(int(mxgw.SrvOptDNSServers), o.dnsServer) })
		}
	}
	for _, d := range o.domains {
		d := d
		steps = append(steps, func() error { return cfg.AddDomain(d) })
	}
	for _, b := range o.backends {
		b := b
		steps = append(steps, func() error { return cfg.AddBackend(b) })
	}
	for _, f := range steps {
		if err := f(); err != nil {
			return fmt.Errorf("gateway: %w", err)
		}
	}
	cfg.OnError(func(err error) { logf("error: %v", err) })

	// The recipient policy: a Go function. An error from the table is a
	// temporary failure, so the client retries instead of bouncing.
	err = cfg.SetPolicy(mxgw.StageRcpt, func(r *mxgw.PolicyRequest) *mxgw.Reply {
		ok, err := rcpts.known(r.Rcpt())
		if err != nil {
			logf("recipient table: %v", err)
			return &mxgw.Reply{Code: 451, Enh: "4.3.0", Text: "Recipient table unavailable, try again later"}
		}
		if !ok {
			return &mxgw.Reply{Code: 550, Enh: "5.1.1", Text: "No such user here"}
		}
		return nil
	})
	if err != nil {
		return err
	}
	// A second stage, as an example: refuse senders that claim to be us.
	err = cfg.SetPolicy(mxgw.StageMail, func(r *mxgw.PolicyRequest) *mxgw.Reply {
		if strings.HasSuffix(strings.ToLower(r.MailFrom()), "@"+strings.ToLower(o.hostname)) {
			return &mxgw.Reply{Code: 550, Enh: "5.7.1", Text: "Forged local sender"}
		}
		return nil
	})
	if err != nil {
		return err
	}

	srv, err := mxgw.NewServer(cfg)
	if err != nil {
		return fmt.Errorf("gateway: %w", err)
	}
	defer srv.Close()
	if err := srv.Start(); err != nil {
		return fmt.Errorf("gateway: %w", err)
	}
	p := srv.Ports()[0]
	logf("gateway listening on %s", net.JoinHostPort(host, strconv.Itoa(p)))
	if o.ready != nil {
		o.ready(p)
	}
	err = srv.Run(ctx, 1)
	n, _ := srv.Stat(mxgw.SrvStatMessages)
	d, _ := srv.Stat(mxgw.SrvStatDelivered)
	logf("gateway stopped: %d messages queued, %d recipients delivered", n, d)
	return err
}
