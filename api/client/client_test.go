package client_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/crowbar-go/crowbar/api/apitest"
	"github.com/crowbar-go/crowbar/api/client"
	"github.com/crowbar-go/crowbar/core/auth"
	"github.com/crowbar-go/crowbar/core/store"
	"github.com/crowbar-go/crowbar/core/store/storetest"
)

func TestClientAgainstServer(t *testing.T) {
	t.Parallel()
	storetest.Each(t, func(t *testing.T, st *store.Store) {
		s := apitest.New(t, st)
		s.AddUser("ops", "ops-password", auth.RoleOperator, true)
		ctx := context.Background()

		c, err := client.New(s.URL, client.Digest("ops", "ops-password"))
		if err != nil {
			t.Fatal(err)
		}
		n, err := c.Nodes().Create(ctx, client.Object{"name": "n1.example.com"})
		if err != nil || n["name"] != "n1.example.com" {
			t.Fatalf("create with digest: %v %v", n, err)
		}
		list, err := c.Nodes().List(ctx, &client.ListOptions{Attributes: []string{"name"}})
		if err != nil || len(list) != 1 || len(list[0]) != 1 {
			t.Fatalf("list with attributes: %v %v", list, err)
		}

		// Errors carry the server's status, message and field.
		_, err = c.Nodes().Show(ctx, "ghost.example.com")
		var e *client.Error
		if !client.IsNotFound(err) || !errors.As(err, &e) || e.Message != "node 'ghost.example.com' not found" {
			t.Fatalf("404: %#v", err)
		}
		_, err = c.Nodes().Create(ctx, client.Object{"name": "Bad Name"})
		if !errors.As(err, &e) || e.Status != 422 || e.Field != "name" || client.IsNotFound(err) {
			t.Fatalf("422: %#v", err)
		}
		_, err = c.Nodes().Create(ctx, client.Object{"name": "x.example.com", "colour": "red"})
		if !errors.As(err, &e) || e.Status != 400 {
			t.Fatalf("400: %#v", err)
		}

		// Tokens minted with digest work as bearer credentials.
		tok, err := c.CreateToken(ctx, 60)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := client.New(s.URL, client.Bearer(tok["token"].(string)))
		if _, err := b.Nodes().Show(ctx, "n1.example.com"); err != nil {
			t.Fatalf("bearer: %v", err)
		}
		if _, err := b.CreateToken(ctx, 60); !errors.As(err, &e) || e.Status != 403 {
			t.Fatalf("a token minting a token: %v", err)
		}
		wrong, _ := client.New(s.URL, client.Digest("ops", "nope"))
		if _, err := wrong.Nodes().List(ctx, nil); !errors.As(err, &e) || e.Status != 401 {
			t.Fatalf("wrong password: %v", err)
		}
		if h, err := wrong.Health(ctx); err != nil || h["status"] == nil {
			t.Fatalf("health needs no credentials: %v %v", h, err)
		}

		// Events arrive through the stream until the context ends.
		ectx, cancel := context.WithTimeout(ctx, 10*time.Second)
		defer cancel()
		got := make(chan client.Event, 1)
		go c.Events(ectx, client.EventFilter{Deployment: "grown"}, func(ev client.Event) error { //nolint:errcheck
			got <- ev
			return errors.New("seen one") // ends the stream
		})
		time.Sleep(200 * time.Millisecond)
		if _, err := c.Deployments().Create(ctx, client.Object{"name": "grown"}); err != nil {
			t.Fatal(err)
		}
		if _, err := c.CommitDeployment(ctx, "grown"); err != nil {
			t.Fatal(err)
		}
		select {
		case ev := <-got:
			if ev.Type != "deployment" || ev.Deployment != "grown" {
				t.Fatalf("event: %+v", ev)
			}
		case <-ectx.Done():
			t.Fatal("no event")
		}
	})
}

func TestNewRefusesBadEndpoints(t *testing.T) {
	for _, e := range []string{"", "127.0.0.1:3000", "ftp://x", "http://"} {
		if _, err := client.New(e); err == nil {
			t.Errorf("New(%q) accepted", e)
		}
	}
}
