package barclamp_test

import (
	"context"
	"fmt"
	"sync"
	"testing"

	"github.com/crowbar-go/crowbar/core/barclamp"
	"github.com/crowbar-go/crowbar/core/store"
	"github.com/crowbar-go/crowbar/core/store/storetest"
)

// Fifty writers race to create each key, then to update it from the same
// revision: exactly one wins every round, on both databases.
func TestKVCompareAndSwapHasOneWinner(t *testing.T) {
	t.Parallel()
	storetest.Each(t, func(t *testing.T, st *store.Store) {
		kv := barclamp.NewKV(st.DB)
		ctx := context.Background()
		const writers = 50
		for _, key := range []string{"ip/192.168.124.10", "ip/192.168.124.11", "ip/192.168.124.12"} {
			for _, expected := range []int64{0, 1} {
				var wg sync.WaitGroup
				var mu sync.Mutex
				winners := []int{}
				for w := 0; w < writers; w++ {
					wg.Add(1)
					go func(w int) {
						defer wg.Done()
						rev, ok, err := kv.CAS(ctx, "network", key, []byte(fmt.Sprintf("node-%d", w)), expected)
						if err != nil {
							t.Errorf("CAS: %v", err)
							return
						}
						if ok {
							if rev != expected+1 {
								t.Errorf("winner got revision %d, want %d", rev, expected+1)
							}
							mu.Lock()
							winners = append(winners, w)
							mu.Unlock()
						}
					}(w)
				}
				wg.Wait()
				if len(winners) != 1 {
					t.Fatalf("key %s from revision %d: %d winners %v, want exactly 1", key, expected, len(winners), winners)
				}
				e, found, err := kv.Get(ctx, "network", key)
				if err != nil || !found || string(e.Value) != fmt.Sprintf("node-%d", winners[0]) || e.Revision != expected+1 {
					t.Fatalf("after the race: %+v found=%v err=%v, want the winner's value", e, found, err)
				}
			}
		}
		// Barclamps do not see each other's keys.
		if _, found, _ := kv.Get(ctx, "provisioner", "ip/192.168.124.10"); found {
			t.Fatal("one barclamp read another's key")
		}
		l, err := kv.List(ctx, "network", "ip/192.168.124.1")
		if err != nil || len(l) != 3 || l[0].Key != "ip/192.168.124.10" {
			t.Fatalf("List: %+v %v", l, err)
		}
		if l, _ := kv.List(ctx, "network", "ip/192.168.124.11"); len(l) != 1 {
			t.Fatalf("List exact prefix: %+v", l)
		}
		if ok, err := kv.Delete(ctx, "network", "ip/192.168.124.10", 1); ok || err != nil {
			t.Fatalf("Delete with a stale revision: %v %v", ok, err)
		}
		if ok, err := kv.Delete(ctx, "network", "ip/192.168.124.10", 2); !ok || err != nil {
			t.Fatalf("Delete: %v %v", ok, err)
		}
		if _, ok, _ := kv.CAS(ctx, "network", "", nil, 0); ok {
			t.Fatal("empty key accepted")
		}
	})
}
