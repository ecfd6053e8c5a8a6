// Package ratelog writes log lines no faster than a set rate, and says on
// the next line it writes how many it held back. Components use it for the
// lines a peer can cause at will, such as refused handshakes, so that a
// flood of refusals cannot flood the log:
//
//	refusals := ratelog.New(ratelog.Config{})
//	refusals.Warn(log, "gateway: handshake refused", "peer", id, "reason", reason)
package ratelog
