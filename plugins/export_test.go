package plugins

import (
	"context"

	"github.com/crowbar-go/crowbar/core/barclamp"
)

// Instantiate starts one more instance of mod outside its pool, for
// benchmarks that measure an instance; it returns the instance's linear
// memory size and a function that closes it.
func Instantiate(ctx context.Context, mod barclamp.Module) (memBytes uint32, closeFn func(), err error) {
	m := mod.(*module)
	in, err := m.instantiate(ctx)
	if err != nil {
		return 0, nil, err
	}
	return in.mod.Memory().Size(), func() { in.mod.Close(context.Background()) }, nil //nolint:errcheck
}
