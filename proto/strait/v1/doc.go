// Package straitv1 holds the generated Go types of Strait's protobuf API: the
// records stored in etcd and the messages that open tunnel streams.
// Regenerate with `make proto`; never edit the *.pb.go files by hand.
package straitv1
