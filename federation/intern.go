package federation

import (
	"hash/maphash"
	"strconv"
	"strings"

	"google.golang.org/protobuf/proto"

	straitv1 "github.com/strait-mesh/strait/proto/strait/v1"
)

// rec is a record as the cache and the snapshot builder hold it: the
// part of a Record they need, without the parsed key (KeyInfo), which
// costs more than a small record's message.
type rec struct {
	key string
	// msg is the record's message, except for configurations: a
	// *clusterConfig, as a configuration's cluster is only in its key.
	msg    proto.Message
	modRev int64
}

// clusterConfig is a configuration record's message and the cluster it
// configures ("" for the global configuration). It is a proto.Message.
type clusterConfig struct {
	*straitv1.GatewayConfig
	cluster string
}

// recMessage returns the message of a record as a rec holds it.
func recMessage(info KeyInfo, msg proto.Message) proto.Message {
	if c, ok := msg.(*straitv1.GatewayConfig); ok {
		return &clusterConfig{GatewayConfig: c, cluster: info.Cluster}
	}
	return msg
}

// message returns the record's message.
func (r *rec) message() proto.Message {
	if c, ok := r.msg.(*clusterConfig); ok {
		return c.GatewayConfig
	}
	return r.msg
}

// recOf returns the rec of a Record, nil for nil.
func recOf(r *Record) *rec {
	if r == nil {
		return nil
	}
	return &rec{key: r.Key, msg: recMessage(r.Info, r.Message), modRev: r.ModRevision}
}

// record returns the Record of an endpoint's rec, its key info taken from
// the message (validation made them agree).
func (r *rec) endpointRecord() Record {
	ep, _ := r.msg.(*straitv1.Endpoint)
	return Record{Key: r.key, ModRevision: r.modRev, Message: r.msg, Info: KeyInfo{Kind: KindEndpoint,
		Cluster: ep.GetCluster(), Namespace: ep.GetNamespace(), Service: ep.GetService(), ID: ep.GetId()}}
}

// valueSum identifies a record's stored bytes: the cache compares it with
// a rewritten value (a gateway's heartbeat rewrites the same bytes) instead
// of keeping every raw value. It is a 64-bit hash under a seed made at
// random for the process: a different value of the same key has the same
// sum with a probability of 2^-64 per write, and nobody outside the
// process can aim for one.
type valueSum uint64

// sumSeed hashes values; it only needs to be the same within a process
// (the snapshot file stores values, not sums).
var sumSeed = maphash.MakeSeed()

func sumOf(value []byte) valueSum { return valueSum(maphash.Bytes(sumSeed, value)) }

// interner shares the strings and port lists that repeat across the
// records of a federation (clusters, namespaces, services, trust domains,
// SPIFFE IDs, regions, zones, ports): a cache of 100,000 exports holds each
// once instead of once per record. It is not safe for concurrent use (a
// source's lock guards it). Its tables are emptied when they grow past
// their limit, so values that stopped repeating (clusters gone, service
// accounts renamed) are not kept forever; records that hold them keep
// their own copy.
type interner struct {
	strs  map[string]string
	ports map[string][]*straitv1.ServicePort
	limit int
}

func newInterner() *interner {
	return &interner{strs: map[string]string{}, ports: map[string][]*straitv1.ServicePort{}, limit: 1 << 16}
}

// str returns the shared copy of v.
func (in *interner) str(v string) string {
	if v == "" {
		return ""
	}
	if s, ok := in.strs[v]; ok {
		return s
	}
	if len(in.strs) >= in.limit {
		clear(in.strs)
	}
	in.strs[v] = v
	return v
}

// portList returns a shared list equal to ports. Ports with fields this
// binary does not know are kept as they are.
func (in *interner) portList(ports []*straitv1.ServicePort) []*straitv1.ServicePort {
	if len(ports) == 0 {
		return ports
	}
	var b strings.Builder
	for _, p := range ports {
		if len(p.ProtoReflect().GetUnknown()) > 0 {
			return ports
		}
		b.WriteString(p.GetName())
		b.WriteByte(0)
		b.WriteString(strconv.FormatUint(uint64(p.GetPort()), 10))
		b.WriteByte(0)
		b.WriteString(strconv.Itoa(int(p.GetProtocol())))
		b.WriteByte(0)
	}
	k := b.String()
	if shared, ok := in.ports[k]; ok {
		return shared
	}
	if len(in.ports) >= in.limit {
		clear(in.ports)
	}
	for _, p := range ports {
		p.Name = in.str(p.GetName())
	}
	ports = ports[:len(ports):len(ports)]
	in.ports[k] = ports
	return ports
}

// compact makes a decoded, validated message share what repeats: the
// labels its key also names (validation made them equal) point into the
// key, which the cache holds anyway; the other repeated
// strings and port lists into the interner's tables. The message's value
// does not change.
func (in *interner) compact(info KeyInfo, msg proto.Message) {
	switch m := msg.(type) {
	case *straitv1.Endpoint:
		m.Cluster, m.Namespace, m.Service, m.Id = info.Cluster, info.Namespace, info.Service, info.ID
		m.SpiffeId, m.Region, m.Zone = in.str(m.SpiffeId), in.str(m.Region), in.str(m.Zone)
		m.Ports = in.portList(m.Ports)
	case *straitv1.Export:
		m.Cluster, m.Namespace, m.Service = info.Cluster, info.Namespace, info.Service
		m.Ports = in.portList(m.Ports)
		for i, c := range m.Consumers {
			m.Consumers[i] = in.str(c)
		}
		for i, s := range m.Servers {
			m.Servers[i] = in.str(s)
		}
	case *straitv1.Gateway:
		m.Cluster, m.Id = info.Cluster, info.ID
		m.TrustDomain, m.SpiffeId = in.str(m.TrustDomain), in.str(m.SpiffeId)
		m.Region, m.Zone = in.str(m.Region), in.str(m.Zone)
	case *straitv1.TrustBundle:
		m.TrustDomain = info.TrustDomain
	}
}
