// SPDX-License-Identifier: MIT

// spfcheck: does a domain's SPF record authorize an address, and why?
//
//	spfcheck --ip 43.207.242.167 --sender newsletter@example.org \
//	    --zone examples/spf/example.zone        # or --dns-server IP:PORT
//
// It prints the result, the deciding term, the trace and the
// Received-SPF / Authentication-Results headers (or the whole check as
// JSON with --json). Exit status: 0 pass, 1 fail/softfail, 2 other
// results, 3 usage or setup errors.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"libmxgw.org/mxgw"
)

type options struct {
	ip, sender, helo, zone, dnsServer, receiver string
	timeout                                     time.Duration
	json, heloID                                bool
}

func main() {
	var o options
	flag.StringVar(&o.ip, "ip", "", "client IP address (required)")
	flag.StringVar(&o.sender, "sender", "", "MAIL FROM address (\"\" for the null sender)")
	flag.StringVar(&o.helo, "helo", "", "HELO/EHLO name")
	flag.StringVar(&o.zone, "zone", "", "answer from this master file (static resolver) instead of DNS")
	flag.StringVar(&o.dnsServer, "dns-server", "", "DNS server IP[:PORT] (default: /etc/resolv.conf)")
	flag.StringVar(&o.receiver, "receiver", "", "our host name for the headers")
	flag.DurationVar(&o.timeout, "timeout", 20*time.Second, "give up after this long")
	flag.BoolVar(&o.json, "json", false, "print the whole check as JSON")
	flag.BoolVar(&o.heloID, "check-helo", false, "check the HELO identity instead of MAIL FROM")
	flag.Parse()
	os.Exit(run(context.Background(), o, os.Stdout, os.Stderr))
}

func run(ctx context.Context, o options, out, errOut io.Writer) int {
	if o.ip == "" || (o.sender == "" && o.helo == "") {
		fmt.Fprintln(errOut, "spfcheck: --ip and --sender (or --helo) are required")
		return 3
	}
	var r *mxgw.Resolver
	var err error
	if o.zone != "" {
		if r, err = mxgw.NewStaticResolver(); err == nil {
			err = r.LoadZoneFile(o.zone, "")
		}
	} else {
		var servers []string
		if o.dnsServer != "" {
			servers = []string{o.dnsServer}
		}
		r, err = mxgw.NewAresResolver(mxgw.AresOptions{Servers: servers})
	}
	if err != nil {
		fmt.Fprintln(errOut, "spfcheck:", err)
		return 3
	}
	defer r.Close()
	spf, err := mxgw.NewSPF(r)
	if err != nil {
		fmt.Fprintln(errOut, "spfcheck:", err)
		return 3
	}
	defer spf.Close()
	if o.receiver != "" {
		if err := spf.SetReceiver(o.receiver); err != nil {
			fmt.Fprintln(errOut, "spfcheck:", err)
			return 3
		}
	}
	ctx, cancel := context.WithTimeout(ctx, o.timeout)
	defer cancel()
	id := mxgw.SPFMailFrom
	if o.heloID {
		id = mxgw.SPFHelo
	}
	res, err := spf.Check(ctx, mxgw.SPFRequest{IP: o.ip, Helo: o.helo, MailFrom: o.sender,
		Identity: id, AuthServID: o.receiver, WithTrace: true, WithHeaders: true, WithJSON: o.json})
	if err != nil {
		if errors.Is(err, mxgw.ErrInvalid) {
			fmt.Fprintln(errOut, "spfcheck: invalid input:", err)
		} else {
			fmt.Fprintln(errOut, "spfcheck:", err)
		}
		return 3
	}
	if o.json {
		out.Write(res.JSON)
		fmt.Fprintln(out)
	} else {
		fmt.Fprintf(out, "result: %s\n", res.Result)
		if res.Mechanism != "" {
			fmt.Fprintf(out, "matched: %s (in the record of %s)\n", res.Mechanism, res.Domain)
		}
		if res.Explanation != "" {
			fmt.Fprintf(out, "explanation: %s\n", res.Explanation)
		}
		if res.Problem != "" {
			fmt.Fprintf(out, "problem: %s\n", res.Problem)
		}
		fmt.Fprintf(out, "lookups: %d DNS terms, %d void, %d queries\n", res.DNSTerms, res.VoidLookups, res.DNSQueries)
		fmt.Fprintln(out, "trace:")
		for _, e := range res.Trace {
			fmt.Fprintf(out, "  %s%-6s %s\n", strings.Repeat("  ", e.Depth), e.Kind, e.Text)
		}
		fmt.Fprint(out, res.ReceivedSPF)
		if strings.HasPrefix(res.AuthResults, "Authentication-Results:") {
			fmt.Fprint(out, res.AuthResults)
		} else {
			fmt.Fprintf(out, "Authentication-Results: <authserv-id>; %s\n", res.AuthResults)
		}
		if res.ReplyCode != 0 {
			fmt.Fprintf(out, "a gateway would answer: %d %s %s\n", res.ReplyCode, res.ReplyEnh, res.ReplyText)
		}
	}
	switch res.Result {
	case mxgw.SPFPass:
		return 0
	case mxgw.SPFFail, mxgw.SPFSoftfail:
		return 1
	}
	return 2
}
