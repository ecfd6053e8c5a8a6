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
// name): the proxy; `init` and `cleanup` execute the strait-init binary
// beside this one (see execInit). invocation is how
// users run it ("strait-proxy", "strait proxy"), for the usage text. It
// returns nil after printing the help that -h or --help asks for.
func Main(ctx context.Context, invocation string, args []string, stdout, stderr io.Writer) error {
	if len(args) > 0 && (args[0] == "init" || args[0] == "cleanup") {
		return execInit(invocation, args)
	}
	fs := pflag.NewFlagSet(invocation, pflag.ContinueOnError)
	fs.SetOutput(stderr)
	fl := addFlags(fs)
	fs.Usage = func() {
		fmt.Fprintf(stderr, "%s\n\nUsage:\n  %s --config proxy.yaml [flags]\n  %s init|cleanup [flags]   (the capture rules: see %s init --help)\n\nExample:\n%s\n\nFlags:\n%s",
			longHelp, invocation, invocation, invocation, example(invocation), fs.FlagUsages())
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

func example(invocation string) string {
	return "  " + invocation + " --config /etc/strait/proxy.yaml --upstream payments.default:9000=127.0.0.1:19000"
}
