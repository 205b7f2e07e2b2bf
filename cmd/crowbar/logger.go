package main

import (
	"fmt"
	"os"

	"github.com/hashicorp/go-hclog"
)

func newLogger(level, format string) (hclog.Logger, error) {
	lvl := hclog.LevelFromString(level)
	if lvl == hclog.NoLevel {
		return nil, usageError{fmt.Errorf("--log-level %q: want trace, debug, info, warn or error", level)}
	}
	if format != "text" && format != "json" {
		return nil, usageError{fmt.Errorf("--log-format %q: want text or json", format)}
	}
	return hclog.New(&hclog.LoggerOptions{
		Name:       "crowbar",
		Level:      lvl,
		JSONFormat: format == "json",
		Output:     os.Stderr,
	}), nil
}
