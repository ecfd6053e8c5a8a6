// Package demo holds the small applications Strait's tests and `strait dev`
// put behind proxies. Both expect every connection to begin with the PROXY
// v2 header the inbound proxy writes, and use the caller's SPIFFE ID from
// it:
//
//   - HTTPServer answers GET / with a line naming its cluster and the
//     caller: "hello from cluster west; you are spiffe://east.strait.local/ns/default/sa/client".
//   - EchoServer echoes bytes back and records the SPIFFE IDs it saw.
//
// Both serve with Serve(listener) or Run(ctx), and Close stops them and every
// connection they hold.
package demo
