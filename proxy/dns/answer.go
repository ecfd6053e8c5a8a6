package dns

import (
	"context"
	"fmt"
	"strings"
	"time"

	"golang.org/x/net/dns/dnsmessage"

	"github.com/strait-mesh/strait/federation"
)

// handle answers one query, or forwards it. It returns nil when there is
// nothing to send back (unparsable query, failed forward).
func (s *Server) handle(ctx context.Context, query []byte, network string) []byte {
	var p dnsmessage.Parser
	h, err := p.Start(query)
	if err != nil {
		s.queries.WithLabelValues("error").Inc()
		return nil
	}
	q, err := p.Question()
	if err != nil || h.Response {
		s.queries.WithLabelValues("error").Inc()
		return nil
	}
	key, local := s.localName(q.Name.String())
	if !local {
		return s.forward(ctx, query, network)
	}
	return s.answer(h, q, key)
}

// localName reports whether name is in the local domain and, if it names a
// service, which (a zero key means "in the domain, but no such service").
func (s *Server) localName(name string) (federation.ServiceKey, bool) {
	name = strings.ToLower(name)
	if name != s.cfg.Domain && !strings.HasSuffix(name, "."+s.cfg.Domain) {
		return federation.ServiceKey{}, false
	}
	labels := strings.Split(strings.TrimSuffix(strings.TrimSuffix(name, s.cfg.Domain), "."), ".")
	if len(labels) != 2 || federation.ValidateLabel(labels[0]) != nil || federation.ValidateLabel(labels[1]) != nil {
		return federation.ServiceKey{}, true
	}
	key := federation.ServiceKey{Name: labels[0], Namespace: labels[1]}
	if s.cfg.Services != nil {
		if _, ok := s.cfg.Services.Snapshot().Service(key); !ok {
			return federation.ServiceKey{}, true
		}
	}
	return key, true
}

// answer builds the authoritative answer for a name in the local domain.
func (s *Server) answer(h dnsmessage.Header, q dnsmessage.Question, key federation.ServiceKey) []byte {
	rh := dnsmessage.Header{ID: h.ID, Response: true, Authoritative: true, RecursionDesired: h.RecursionDesired,
		RecursionAvailable: true}
	result := "nodata"
	if key == (federation.ServiceKey{}) {
		rh.RCode = dnsmessage.RCodeNameError
		result = "nxdomain"
	}
	b := dnsmessage.NewBuilder(make([]byte, 0, 128), rh)
	b.EnableCompression()
	_ = b.StartQuestions()
	_ = b.Question(q)
	_ = b.StartAnswers()
	if rh.RCode == dnsmessage.RCodeSuccess && (q.Type == dnsmessage.TypeA || q.Type == dnsmessage.TypeALL) && q.Class == dnsmessage.ClassINET {
		vip, err := s.vips.Assign(key)
		if err != nil {
			s.log.Warn("no virtual IP", logService, key.String(), logErr, err)
			s.queries.WithLabelValues("error").Inc()
			return s.failure(h, q)
		}
		ttl := uint32(s.cfg.TTL / time.Second)
		_ = b.AResource(dnsmessage.ResourceHeader{Name: q.Name, Class: dnsmessage.ClassINET, TTL: ttl},
			dnsmessage.AResource{A: vip.As4()})
		result = "vip"
	}
	msg, err := b.Finish()
	if err != nil {
		s.queries.WithLabelValues("error").Inc()
		return nil
	}
	s.queries.WithLabelValues(result).Inc()
	return msg
}

// failure is a SERVFAIL answer.
func (s *Server) failure(h dnsmessage.Header, q dnsmessage.Question) []byte {
	b := dnsmessage.NewBuilder(nil, dnsmessage.Header{ID: h.ID, Response: true, RCode: dnsmessage.RCodeServerFailure,
		RecursionDesired: h.RecursionDesired, RecursionAvailable: true})
	_ = b.StartQuestions()
	_ = b.Question(q)
	msg, _ := b.Finish()
	return msg
}

// forward sends the query unchanged to the upstream resolver, always over
// TCP, and returns its answer, cut to fit a UDP client's limit.
//
// Never over UDP: in a captured pod, a UDP query of the proxy's leaves a
// conntrack entry (pod:port → resolver:53, not redirected: the proxy is
// excluded) that outlives its socket by the UDP timeout (30 s). An
// application query that the kernel happens to send from the same port to
// the same resolver matches that entry, is not NEW, skips the capture's
// nat chain and reaches the cluster's resolver directly: the application
// then gets the ServiceImport's address, around the proxy. With every
// forwarded query on TCP (whose ports the kernel never hands out twice
// while in use, and whose closed entries a new SYN replaces), an
// application's UDP query never meets an entry of the proxy's. (Putting
// the proxy's DNS in a conntrack zone of its own would also separate them;
// not done.)
func (s *Server) forward(ctx context.Context, query []byte, network string) []byte {
	resp, err := s.exchange(ctx, query, "tcp")
	if err != nil {
		s.log.Debug("forward failed", logUpstream, s.cfg.Upstream, logErr, err)
		s.queries.WithLabelValues("error").Inc()
		return nil
	}
	s.queries.WithLabelValues("forwarded").Inc()
	if network == "udp" {
		resp = fitUDP(query, resp)
	}
	return resp
}

// fitUDP returns resp when it fits the UDP payload size the query
// announced (its EDNS0 OPT record; 512 bytes without one), else the
// header and question of resp with the TC bit set, which tells the client
// to ask again over TCP (RFC 1035 4.2.1, RFC 6891 6.2.5).
func fitUDP(query, resp []byte) []byte {
	limit := 512
	var p dnsmessage.Parser
	if _, err := p.Start(query); err == nil && p.SkipAllQuestions() == nil && p.SkipAllAnswers() == nil && p.SkipAllAuthorities() == nil {
		for {
			h, err := p.AdditionalHeader()
			if err != nil {
				break
			}
			if h.Type == dnsmessage.TypeOPT {
				limit = max(limit, int(h.Class))
				break
			}
			if p.SkipAdditional() != nil {
				break
			}
		}
	}
	if len(resp) <= limit {
		return resp
	}
	var rp dnsmessage.Parser
	h, err := rp.Start(resp)
	if err != nil {
		return nil
	}
	qs, err := rp.AllQuestions()
	if err != nil {
		return nil
	}
	h.Truncated = true
	b := dnsmessage.NewBuilder(nil, h)
	_ = b.StartQuestions()
	for _, q := range qs {
		_ = b.Question(q)
	}
	msg, _ := b.Finish()
	return msg
}

func (s *Server) exchange(ctx context.Context, query []byte, network string) ([]byte, error) {
	ctx, cancel := context.WithTimeout(ctx, s.cfg.UpstreamTimeout)
	defer cancel()
	c, err := s.dialer.DialContext(ctx, network, s.cfg.Upstream)
	if err != nil {
		return nil, err
	}
	defer c.Close()
	deadline, _ := ctx.Deadline()
	_ = c.SetDeadline(deadline)
	if network == "tcp" {
		if err := writeTCPMessage(c, query); err != nil {
			return nil, err
		}
		return readTCPMessage(c)
	}
	if _, err := c.Write(query); err != nil {
		return nil, err
	}
	buf := make([]byte, maxUDPMessage)
	n, err := c.Read(buf)
	if err != nil {
		return nil, err
	}
	if n < 2 || buf[0] != query[0] || buf[1] != query[1] {
		return nil, fmt.Errorf("dns: upstream answered another query")
	}
	return buf[:n], nil
}
