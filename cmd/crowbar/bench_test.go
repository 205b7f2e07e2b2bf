package main

import (
	"bufio"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/crowbar-go/crowbar/barclamps"
)

// BenchmarkServerStart starts the real binary with every first-party
// barclamp on a warm compilation cache and an existing database, and times
// it from exec to the first healthy answer. It also reports the idle
// server's resident memory. Run it after make barclamps.
func BenchmarkServerStart(b *testing.B) {
	embedded, _ := barclamps.Embedded()
	if len(embedded) == 0 {
		b.Skip("no embedded barclamps: run make barclamps first")
	}
	bin := filepath.Join(b.TempDir(), "crowbar")
	if out, err := exec.Command("go", "build", "-o", bin, ".").CombinedOutput(); err != nil {
		b.Fatalf("build: %v\n%s", err, out)
	}
	data := b.TempDir()
	// start returns the process, the time to its first healthy answer
	// (core API) and to /ready (every embedded barclamp loaded).
	start := func() (*exec.Cmd, time.Duration, time.Duration) {
		ln, _ := net.Listen("tcp", "127.0.0.1:0")
		addr := ln.Addr().String()
		ln.Close()
		cmd := exec.Command(bin, "server", "--data-dir", data, "--listen", addr, "--log-level", "warn")
		t0 := time.Now()
		if err := cmd.Start(); err != nil {
			b.Fatal(err)
		}
		var health time.Duration
		for _, path := range []string{"/health", "/ready"} {
			for {
				resp, err := http.Get("http://" + addr + path)
				if err == nil {
					resp.Body.Close()
					if resp.StatusCode == 200 {
						break
					}
				}
				if time.Since(t0) > time.Minute {
					b.Fatalf("%s did not answer 200 within a minute", path)
				}
				time.Sleep(2 * time.Millisecond)
			}
			if health == 0 {
				health = time.Since(t0)
			}
		}
		return cmd, health, time.Since(t0)
	}
	stop := func(cmd *exec.Cmd) {
		cmd.Process.Signal(syscall.SIGTERM)
		cmd.Wait()
	}
	cmd, cold, coldReady := start() // first start: creates the database
	stop(cmd)
	var total, totalReady time.Duration
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		cmd, took, ready := start()
		total += took
		totalReady += ready
		b.StopTimer()
		if i == b.N-1 {
			time.Sleep(2 * time.Second) // idle
			b.ReportMetric(float64(rssKiB(b, cmd.Process.Pid))/1024, "idle-RSS-MiB")
		}
		stop(cmd)
		b.StartTimer()
	}
	b.ReportMetric(float64(total.Milliseconds())/float64(b.N), "warm-start-ms")
	b.ReportMetric(float64(totalReady.Milliseconds())/float64(b.N), "warm-ready-ms")
	b.ReportMetric(float64(coldReady.Milliseconds()), "first-ready-ms")
	b.ReportMetric(float64(len(embedded)), "barclamps")
	b.ReportMetric(float64(cold.Milliseconds()), "first-start-ms")
}

func rssKiB(b *testing.B, pid int) int {
	f, err := os.Open("/proc/" + strconv.Itoa(pid) + "/status")
	if err != nil {
		b.Skipf("no /proc: %v", err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), "VmRSS:"); ok {
			n, _ := strconv.Atoi(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "kB")))
			return n
		}
	}
	b.Fatal("VmRSS not found")
	return 0
}
