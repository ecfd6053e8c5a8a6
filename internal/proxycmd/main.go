package proxycmd

import (
	"context"
	"errors"
	"fmt"
	"io"

	"github.com/spf13/pflag"
)

// Short describes the proxy command in one line.
const Short = "Run the proxy beside a workload"

// Main runs the proxy command with args (the arguments after the command's
// name): the proxy, or its init or cleanup subcommand. invocation is how
// users run it ("strait-proxy", "strait proxy"), for the usage text. It
// returns nil after printing the help that -h or --help asks for.
func Main(ctx context.Context, invocation string, args []string, stdout, stderr io.Writer) error {
	if len(args) > 0 {
		switch args[0] {
		case "init":
			return mainCapture(ctx, invocation+" init", initHelp, args[1:], stdout, stderr, runInit, true)
		case "cleanup":
			return mainCapture(ctx, invocation+" cleanup", cleanupHelp, args[1:], stdout, stderr, runCleanup, false)
		}
	}
	fs := pflag.NewFlagSet(invocation, pflag.ContinueOnError)
	fs.SetOutput(stderr)
	fl := addFlags(fs)
	fs.Usage = func() {
		fmt.Fprintf(stderr, "%s\n\nUsage:\n  %s --config proxy.yaml [flags]\n  %s init|cleanup [flags]\n\nExample:\n%s\n\nFlags:\n%s",
			longHelp, invocation, invocation, example(invocation), fs.FlagUsages())
	}
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, pflag.ErrHelp) {
			return nil
		}
		return fmt.Errorf("proxy: %w", err)
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("proxy: unexpected argument %q", fs.Arg(0))
	}
	f, err := fl.file()
	if err != nil {
		return err
	}
	return Run(ctx, f)
}

// mainCapture runs the init or cleanup subcommand with args.
func mainCapture(ctx context.Context, invocation, help string, args []string, stdout, stderr io.Writer,
	run func(context.Context, *captureFlags, io.Writer) error, initFlags bool) error {
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
	return run(ctx, cf, stdout)
}

func example(invocation string) string {
	return "  " + invocation + " --config /etc/strait/proxy.yaml --upstream payments.default:9000=127.0.0.1:19000"
}
