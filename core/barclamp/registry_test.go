package barclamp_test

import (
	"context"
	"testing"

	"github.com/crowbar-go/crowbar/core/barclamp"
	"github.com/crowbar-go/crowbar/core/model"
	"github.com/crowbar-go/crowbar/core/store"
	"github.com/crowbar-go/crowbar/core/store/storetest"
	"github.com/crowbar-go/crowbar/plugins"
	"github.com/crowbar-go/crowbar/plugins/pluginstest"
)

// Two registries over one database stand for two replicas: what one
// installs or removes, the other picks up with Sync.
func TestReplicasFollowInstallsAndRemovals(t *testing.T) {
	ctx := context.Background()
	hello := pluginstest.Build(t, "examples/hello-barclamp")
	base := pluginstest.Build(t, "barclamps/crowbar")
	embedded := map[string][]byte{"crowbar": base}
	storetest.Each(t, func(t *testing.T, st *store.Store) {
		newReplica := func() *barclamp.Registry {
			r := barclamp.NewRegistry(st.DB, pluginstest.Host(t, st, plugins.Config{PoolSize: 1}), nil)
			t.Cleanup(func() { r.Close(ctx) })
			if err := r.LoadAll(ctx, embedded); err != nil {
				t.Fatal(err)
			}
			return r
		}
		a := newReplica()
		var first model.Barclamp
		st.DB.Where("name = ?", "crowbar").Take(&first)

		// A restart with the same module registers nothing again.
		b := newReplica()
		var again model.Barclamp
		st.DB.Where("name = ?", "crowbar").Take(&again)
		if !again.UpdatedAt.Equal(first.UpdatedAt) || b.Status("crowbar") != "loaded" {
			t.Fatalf("second start re-registered or did not load: %v → %v, %s", first.UpdatedAt, again.UpdatedAt, b.Status("crowbar"))
		}

		if _, err := a.Install(ctx, hello, barclamp.SourceInstalled); err != nil {
			t.Fatal(err)
		}
		if b.Status("hello") != "not loaded" {
			t.Fatalf("replica b before sync: %s", b.Status("hello"))
		}
		if err := b.Sync(ctx); err != nil {
			t.Fatal(err)
		}
		got, ok := b.Get("hello")
		if !ok || got.Digest != barclamp.Digest(hello) {
			t.Fatalf("replica b after sync: %v %s", ok, b.Status("hello"))
		}
		resp, err := got.Module.HTTP(ctx, &barclamp.HTTPRequest{Method: "GET", Route: "GET /greetings/{name}", Params: map[string]string{"name": "x"}})
		if err != nil || resp.Status != 200 {
			t.Fatalf("call through replica b: %v %v", resp, err)
		}

		if err := a.Remove(ctx, "hello"); err != nil {
			t.Fatal(err)
		}
		if err := b.Sync(ctx); err != nil {
			t.Fatal(err)
		}
		if _, ok := b.Get("hello"); ok {
			t.Fatal("replica b still serves a removed barclamp")
		}
	})
}
