package federation

import (
	"hash/maphash"
	"slices"
)

// A pmap is a persistent (copy-on-write) map: a two-level trie of
// pmapFanout × pmapFanout small Go maps. Snapshots share every leaf a
// change did not touch, so a change copies two arrays of pmapFanout
// pointers and one leaf (about 1/4096 of the map), not the whole map.
const pmapFanout = 64

type pmapLeaves[K comparable, V any] [pmapFanout]map[K]V

// pmap is immutable once published; pmapTxn derives the next version.
type pmap[K comparable, V any] struct {
	root *[pmapFanout]*pmapLeaves[K, V]
	n    int
}

// pmapSeed hashes every pmap's keys; it only spreads keys over leaves, so
// one seed for the process is enough, and it never changes.
var pmapSeed = maphash.MakeSeed()

func pmapIndex[K comparable](k K) (int, int) {
	h := maphash.Comparable(pmapSeed, k)
	return int(h % pmapFanout), int(h / pmapFanout % pmapFanout)
}

// get returns the value of k.
func (m pmap[K, V]) get(k K) (V, bool) {
	if m.root != nil {
		i, j := pmapIndex(k)
		if leaves := m.root[i]; leaves != nil {
			v, ok := leaves[j][k]
			return v, ok
		}
	}
	var zero V
	return zero, false
}

// at returns the value of k, or the zero value.
func (m pmap[K, V]) at(k K) V {
	v, _ := m.get(k)
	return v
}

// len is the number of keys.
func (m pmap[K, V]) len() int { return m.n }

// all calls f for every key and value, in no particular order.
func (m pmap[K, V]) all(f func(K, V)) {
	if m.root == nil {
		return
	}
	for _, leaves := range m.root {
		if leaves == nil {
			continue
		}
		for _, leaf := range leaves {
			for k, v := range leaf {
				f(k, v)
			}
		}
	}
}

// keys lists every key, sorted by compare.
func (m pmap[K, V]) keys(compare func(a, b K) int) []K {
	out := make([]K, 0, m.n)
	m.all(func(k K, _ V) { out = append(out, k) })
	slices.SortFunc(out, compare)
	return out
}

// pmapTxn builds the next version of a pmap: each array and leaf it
// touches is copied once, the others stay shared with the previous version.
type pmapTxn[K comparable, V any] struct {
	next       pmap[K, V]
	ownRoot    bool
	ownLeaves  [pmapFanout]bool
	ownedLeafs map[[2]int]bool
}

func (m pmap[K, V]) txn() *pmapTxn[K, V] { return &pmapTxn[K, V]{next: m} }

// leaf returns a leaf this transaction owns, for writing.
func (t *pmapTxn[K, V]) leaf(k K) map[K]V {
	if !t.ownRoot {
		t.ownRoot = true
		root := new([pmapFanout]*pmapLeaves[K, V])
		if t.next.root != nil {
			*root = *t.next.root
		}
		t.next.root = root
	}
	i, j := pmapIndex(k)
	if !t.ownLeaves[i] {
		t.ownLeaves[i] = true
		leaves := new(pmapLeaves[K, V])
		if old := t.next.root[i]; old != nil {
			*leaves = *old
		}
		t.next.root[i] = leaves
	}
	if t.ownedLeafs == nil {
		t.ownedLeafs = map[[2]int]bool{}
	}
	if !t.ownedLeafs[[2]int{i, j}] {
		t.ownedLeafs[[2]int{i, j}] = true
		old := t.next.root[i][j]
		leaf := make(map[K]V, len(old)+1)
		for k, v := range old {
			leaf[k] = v
		}
		t.next.root[i][j] = leaf
	}
	return t.next.root[i][j]
}

// set sets k to v.
func (t *pmapTxn[K, V]) set(k K, v V) {
	leaf := t.leaf(k)
	if _, ok := leaf[k]; !ok {
		t.next.n++
	}
	leaf[k] = v
}

// del removes k.
func (t *pmapTxn[K, V]) del(k K) {
	if _, ok := t.next.get(k); !ok {
		return
	}
	delete(t.leaf(k), k)
	t.next.n--
}

// done returns the new version; the transaction must not be used after.
func (t *pmapTxn[K, V]) done() pmap[K, V] { return t.next }
