package dns

import (
	"encoding/binary"
	"errors"
	"hash/fnv"
	"net/netip"
	"sync"

	"github.com/strait-mesh/strait/federation"
)

// ErrVIPRangeFull is returned when every address of the range is taken.
var ErrVIPRangeFull = errors.New("dns: virtual IP range is full")

// VIPTable assigns virtual IPs to services. It is safe for concurrent use.
type VIPTable struct {
	base netip.Addr
	size uint32 // addresses usable: the range without its first address

	mu    sync.Mutex
	byKey map[federation.ServiceKey]netip.Addr
	byIP  map[netip.Addr]federation.ServiceKey
}

// NewVIPTable returns a table over an IPv4 prefix of at most /30.
func NewVIPTable(r netip.Prefix) (*VIPTable, error) {
	if !r.Addr().Is4() || r.Bits() > 30 || r.Bits() < 8 {
		return nil, errors.New("dns: the virtual IP range must be an IPv4 prefix of /8 to /30")
	}
	r = r.Masked()
	return &VIPTable{
		base:  r.Addr(),
		size:  uint32(1)<<(32-r.Bits()) - 1,
		byKey: map[federation.ServiceKey]netip.Addr{},
		byIP:  map[netip.Addr]federation.ServiceKey{},
	}, nil
}

// Assign returns the service's virtual IP, allocating it on first use.
func (t *VIPTable) Assign(key federation.ServiceKey) (netip.Addr, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if a, ok := t.byKey[key]; ok {
		return a, nil
	}
	if uint32(len(t.byKey)) >= t.size {
		return netip.Addr{}, ErrVIPRangeFull
	}
	h := fnv.New32a()
	_, _ = h.Write([]byte(key.Name + "." + key.Namespace))
	start := h.Sum32() % t.size
	for i := uint32(0); ; i++ {
		a := t.at((start + i) % t.size)
		if _, taken := t.byIP[a]; !taken {
			t.byKey[key] = a
			t.byIP[a] = key
			return a, nil
		}
	}
}

// at is the address at offset n (0-based) after the range's first address.
func (t *VIPTable) at(n uint32) netip.Addr {
	b := t.base.As4()
	v := binary.BigEndian.Uint32(b[:]) + 1 + n
	binary.BigEndian.PutUint32(b[:], v)
	return netip.AddrFrom4(b)
}

// ServiceForAddr returns the service a virtual IP was assigned to.
func (t *VIPTable) ServiceForAddr(a netip.Addr) (federation.ServiceKey, bool) {
	t.mu.Lock()
	defer t.mu.Unlock()
	k, ok := t.byIP[a.Unmap()]
	return k, ok
}
