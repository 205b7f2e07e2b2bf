package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/crowbar-go/crowbar/api/client"
	"github.com/crowbar-go/crowbar/core/store/storetest"
)

// soakDuration: CROWBAR_SOAK (make soak: 5m); 10 s in make test.
func soakDuration(t *testing.T) time.Duration {
	if v := os.Getenv("CROWBAR_SOAK"); v != "" {
		d, err := time.ParseDuration(v)
		if err != nil {
			t.Fatalf("CROWBAR_SOAK=%q: %v", v, err)
		}
		return d
	}
	return 10 * time.Second
}

// TestSoak runs 16 clients against the real binary for the soak duration,
// mixing reads and writes on nodes (create, show, list, update, attribs,
// delete) on both databases: no 5xx, and the server's resident memory and
// goroutines level off (sampled through its metrics endpoint).
func TestSoak(t *testing.T) {
	bin := testBinary(t)
	d := soakDuration(t)
	for _, db := range storetest.Databases(t) {
		t.Run(string(db.Dialect), func(t *testing.T) {
			dir := t.TempDir()
			dsn := db.DSN
			if db.Dialect == "sqlite" {
				dsn = filepath.Join(dir, "crowbar.db")
			}
			secret := "soak-scrape-secret-0123456789"
			tokenFile := filepath.Join(dir, "scrape.token")
			os.WriteFile(tokenFile, []byte(secret), 0o600) //nolint:errcheck
			ln, _ := net.Listen("tcp", "127.0.0.1:0")
			maddr := ln.Addr().String()
			ln.Close()
			srv := &faultServer{t: t, bin: bin, dir: dir, dsn: dsn, args: []string{"--metrics-listen", maddr, "--metrics-token-file", tokenFile}}
			srv.start()
			defer srv.stop()
			base := srv.base
			user, pass, _ := strings.Cut(srv.key(), ":")
			dc, _ := client.New(base, client.Digest(user, pass))
			tok, err := dc.CreateToken(context.Background(), 3600)
			if err != nil {
				t.Fatal(err)
			}
			c, _ := client.New(base, client.Bearer(fmt.Sprint(tok["token"])))

			sample := func() (rssMiB float64, goroutines int) {
				req, _ := http.NewRequest("GET", "http://"+maddr+"/metrics", nil)
				req.Header.Set("Authorization", "Bearer "+secret)
				resp, err := http.DefaultClient.Do(req)
				if err != nil {
					t.Fatal(err)
				}
				defer resp.Body.Close()
				b, _ := io.ReadAll(resp.Body)
				if m := regexp.MustCompile(`(?m)^process_resident_memory_bytes (\S+)`).FindSubmatch(b); m != nil {
					f, _ := strconv.ParseFloat(string(m[1]), 64)
					rssMiB = f / (1 << 20)
				}
				if m := regexp.MustCompile(`(?m)^go_goroutines (\d+)`).FindSubmatch(b); m != nil {
					goroutines, _ = strconv.Atoi(string(m[1]))
				}
				return
			}

			var mu sync.Mutex
			var lat []time.Duration
			statuses := map[int]int{}
			record := func(took time.Duration, err error) {
				status := 200
				var ce *client.Error
				if errors.As(err, &ce) {
					status = ce.Status
				} else if err != nil {
					status = -1
				}
				mu.Lock()
				lat = append(lat, took)
				statuses[status]++
				mu.Unlock()
			}
			ctx, cancel := context.WithTimeout(context.Background(), d)
			defer cancel()
			var samples [][2]float64
			var wg sync.WaitGroup
			for w := range 16 {
				wg.Add(1)
				go func() {
					defer wg.Done()
					for i := 0; ctx.Err() == nil; i++ {
						name := fmt.Sprintf("s%02d-%06d.soak.test", w, i)
						op := func(f func() error) {
							t0 := time.Now()
							err := f()
							if ctx.Err() == nil {
								record(time.Since(t0), err)
							}
						}
						bg := context.Background()
						op(func() error { _, err := c.Nodes().Create(bg, client.Object{"name": name}); return err })
						op(func() error { _, err := c.Nodes().Show(bg, name); return err })
						op(func() error { _, err := c.Nodes().List(bg, &client.ListOptions{Limit: 50}); return err })
						op(func() error {
							_, err := c.Nodes().Update(bg, name, client.Object{"description": "soaked"})
							return err
						})
						op(func() error {
							return c.Do(bg, client.Request{Method: "GET", Path: "/api/v2/nodes/" + name + "/attribs"}, nil)
						})
						if i%2 == 0 { // half the nodes stay: the tables grow
							op(func() error { return c.Nodes().Destroy(bg, name) })
						}
					}
				}()
			}
			tick := time.NewTicker(d / 10)
			start := time.Now()
			for done := false; !done; {
				select {
				case <-ctx.Done():
					done = true
				case <-tick.C:
					r, g := sample()
					samples = append(samples, [2]float64{r, float64(g)})
				}
			}
			tick.Stop()
			wg.Wait()
			took := time.Since(start)
			for code, n := range statuses {
				if code >= 500 || code < 0 {
					t.Errorf("%d requests answered %d", n, code)
				}
			}
			slices.Sort(lat)
			p := func(q float64) time.Duration { return lat[int(q*float64(len(lat)-1))] }
			t.Logf("%s: %d requests in %s (%.0f/s), p50 %s, p99 %s, statuses %v; RSS MiB / goroutines every %s: %v",
				db.Dialect, len(lat), took.Round(time.Second), float64(len(lat))/took.Seconds(), p(0.5), p(0.99), statuses, d/10, samples)
			if len(samples) >= 5 {
				// Flat: after the first sample (warm-up), the medians of the
				// later half are within 50% + 32 MiB of the earlier half's
				// RSS and 32 of its goroutines (which move with the requests
				// in flight).
				early, late := medians(samples[1:len(samples)/2+1]), medians(samples[len(samples)/2+1:])
				if late[0] > early[0]*1.5+32 || late[1] > early[1]+32 {
					t.Errorf("grew over the soak: RSS %.0f → %.0f MiB, goroutines %.0f → %.0f (medians)", early[0], late[0], early[1], late[1])
				}
			}
		})
	}
}

// medians of each column.
func medians(rows [][2]float64) [2]float64 {
	var out [2]float64
	for c := range 2 {
		col := make([]float64, len(rows))
		for i, r := range rows {
			col[i] = r[c]
		}
		slices.Sort(col)
		out[c] = col[len(col)/2]
	}
	return out
}
