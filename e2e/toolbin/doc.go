// Package toolbin finds the binaries that e2e tests run and that the e2e tools
// module pins (etcd, etcdctl, fortio), building
// them with e2e/tools/build.sh on first use.
//
//	etcd, err := toolbin.Path(ctx, "etcd")
//
// Set STRAIT_E2E_TOOLS_BIN to a directory of prebuilt binaries to skip the
// build.
package toolbin
