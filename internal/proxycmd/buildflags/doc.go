// Package buildflags reads the go build flags of strait-proxy from
// cmd/strait-proxy/build.flags, the one list that make build, make image,
// deploy/Dockerfile and the tests that build the sidecar share, so that
// what the footprint test measures is the binary that ships.
//
//	flags, err := buildflags.Read("cmd/strait-proxy/build.flags")
//	if err != nil {
//		return err
//	}
//	cmd := exec.Command("go", append(append([]string{"build"}, flags...), "-o", out, "./cmd/strait-proxy")...)
package buildflags
