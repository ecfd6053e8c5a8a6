package nft

import (
	"context"
	"fmt"
	"slices"

	"github.com/google/nftables"

	"github.com/strait-mesh/strait/proxy/capture"
)

// Rules are the rules of the chain that Install installs for cfg, in
// order, in the syntax of `nft list table ip strait` (and of List).
func Rules(cfg capture.Config) []string {
	rs := build(cfg.WithDefaults())
	out := make([]string, len(rs))
	for i, r := range rs {
		out[i] = r.text
	}
	return out
}

// Install sets up the capture rules in the current network namespace, over
// netlink (no external command; needs CAP_NET_ADMIN only). In one
// transaction it replaces whatever table a previous Install left, so
// running it twice is harmless and no packet ever sees half the rules.
func Install(ctx context.Context, cfg capture.Config) error {
	c := cfg.WithDefaults()
	if err := c.Validate(); err != nil {
		return err
	}
	conn, err := open(ctx)
	if err != nil {
		return err
	}
	// Deleting first (dropTable) and adding again replaces the table
	// whole, in the same transaction.
	t := dropTable(conn)
	conn.AddTable(t)
	ch := conn.AddChain(chain(t))
	for _, r := range build(c) {
		conn.AddRule(&nftables.Rule{Table: t, Chain: ch, Exprs: r.exprs})
	}
	if err := conn.Flush(); err != nil {
		return fmt.Errorf("capture: install table ip %s: %w", capture.Table, err)
	}
	return nil
}

// Cleanup removes the table Install adds, with every rule in it. It
// succeeds when there is nothing to remove. cfg is not needed (the table
// holds everything) and is accepted for symmetry with Install.
func Cleanup(ctx context.Context, _ capture.Config) error {
	conn, err := open(ctx)
	if err != nil {
		return err
	}
	dropTable(conn)
	if err := conn.Flush(); err != nil {
		return fmt.Errorf("capture: delete table ip %s: %w", capture.Table, err)
	}
	return nil
}

// Installed reports whether the capture table is present in the current
// network namespace.
func Installed(ctx context.Context, _ capture.Config) (bool, error) {
	conn, err := open(ctx)
	if err != nil {
		return false, err
	}
	return present(conn)
}

// open is a netlink connection to nftables in the current network
// namespace, unless ctx is done.
func open(ctx context.Context) (*nftables.Conn, error) {
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("capture: %w", err)
	}
	conn, err := nftables.New()
	if err != nil {
		return nil, fmt.Errorf("capture: netlink: %w", err)
	}
	return conn, nil
}

// dropTable queues the deletion of the capture table on conn and returns
// the table. Adding it first makes the delete succeed whether or not the
// table was there, in one transaction.
func dropTable(conn *nftables.Conn) *nftables.Table {
	t := table()
	conn.AddTable(t)
	conn.DelTable(t)
	return t
}

func present(conn *nftables.Conn) (bool, error) {
	ts, err := conn.ListTablesOfFamily(nftables.TableFamilyIPv4)
	if err != nil {
		return false, fmt.Errorf("capture: list tables: %w", err)
	}
	return slices.ContainsFunc(ts, func(t *nftables.Table) bool { return t.Name == capture.Table }), nil
}

func table() *nftables.Table {
	return &nftables.Table{Name: capture.Table, Family: nftables.TableFamilyIPv4}
}

func chain(t *nftables.Table) *nftables.Chain {
	accept := nftables.ChainPolicyAccept
	return &nftables.Chain{
		Name: capture.Chain, Table: t, Type: nftables.ChainTypeNAT,
		Hooknum: nftables.ChainHookOutput, Priority: nftables.ChainPriorityNATDest, Policy: &accept,
	}
}
