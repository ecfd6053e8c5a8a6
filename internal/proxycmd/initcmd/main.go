package initcmd

import (
	"context"
	"errors"
	"fmt"
	"io"

	"github.com/spf13/pflag"
)

// Main runs strait-init with args (the arguments after the command's
// name): `cleanup [flags]` removes the capture rules, anything else is the
// flags of init. invocation is how users run it ("strait-init"), for the
// usage text. It returns nil after printing the help that -h or --help asks
// for.
func Main(ctx context.Context, invocation string, args []string, stdout, stderr io.Writer) error {
	if len(args) > 0 && args[0] == "cleanup" {
		return Cleanup(ctx, invocation+" cleanup", args[1:], stdout, stderr)
	}
	return Init(ctx, invocation, args, stdout, stderr)
}

// Init runs init with args, its flags: it hands the --own-dir directories
// to their owner and installs the capture rules in the current network
// namespace. invocation names the command in the usage text ("strait-init",
// "strait proxy init").
func Init(ctx context.Context, invocation string, args []string, stdout, stderr io.Writer) error {
	return run(ctx, invocation, initHelp, args, stdout, stderr, runInit, true)
}

// Cleanup runs cleanup with args, its flags: it removes the capture rules
// from the current network namespace.
func Cleanup(ctx context.Context, invocation string, args []string, stdout, stderr io.Writer) error {
	return run(ctx, invocation, cleanupHelp, args, stdout, stderr, runCleanup, false)
}

// run parses args as the flags of init (initFlags) or cleanup and runs it.
func run(ctx context.Context, invocation, help string, args []string, stdout, stderr io.Writer,
	do func(context.Context, *captureFlags, io.Writer) error, initFlags bool) error {
	fs := pflag.NewFlagSet(invocation, pflag.ContinueOnError)
	fs.SetOutput(stderr)
	cf := addCaptureFlags(fs)
	if initFlags {
		addInitFlags(fs, cf)
	}
	fs.Usage = func() {
		fmt.Fprintf(stderr, "%s\n\nUsage:\n  %s [flags]\n\nFlags:\n%s", help, invocation, fs.FlagUsages())
	}
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, pflag.ErrHelp) {
			return nil
		}
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("unexpected argument %q", fs.Arg(0))
	}
	return do(ctx, cf, stdout)
}
