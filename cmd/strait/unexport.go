package main

import (
	"errors"

	"github.com/spf13/cobra"
)

func newUnexportCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "unexport",
		Short: "(not implemented yet)",
		RunE: func(*cobra.Command, []string) error {
			return errors.New("unexport: not implemented yet")
		},
	}
}
