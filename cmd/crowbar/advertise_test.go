package main

import (
	"errors"
	"net"
	"strings"
	"testing"
)

func TestCheckAdvertiseURL(t *testing.T) {
	for in, want := range map[string]string{
		"http://10.0.0.2:3000":              "http://10.0.0.2:3000",
		"https://crowbar.example.com/":      "https://crowbar.example.com",
		"http://[2001:db8::2]:3000":         "http://[2001:db8::2]:3000",
		"https://proxy.example.com/crowbar": "https://proxy.example.com/crowbar",
	} {
		if got, err := checkAdvertiseURL(in); err != nil || got != want {
			t.Errorf("checkAdvertiseURL(%q) = %q, %v; want %q", in, got, err, want)
		}
	}
	for _, bad := range []string{"", "10.0.0.2:3000", "ftp://10.0.0.2", "http://", "http://h/?q=1", "http://u:p@h", "http://h/#x"} {
		_, err := checkAdvertiseURL(bad)
		var ue usageError
		if !errors.As(err, &ue) || !strings.Contains(err.Error(), "--advertise-url") {
			t.Errorf("checkAdvertiseURL(%q) = %v, want a usage error naming the flag", bad, err)
		}
	}
}

func TestDefaultAdvertiseURL(t *testing.T) {
	if got := defaultAdvertiseURL(&net.TCPAddr{IP: net.ParseIP("10.1.2.3"), Port: 3000}); got != "http://10.1.2.3:3000" {
		t.Errorf("a specific listen address: %s", got)
	}
	if got := defaultAdvertiseURL(&net.TCPAddr{IP: net.ParseIP("127.0.0.1"), Port: 3000}); got != "http://127.0.0.1:3000" || !isLoopbackURL(got) {
		t.Errorf("loopback: %s", got)
	}
	// Listening on all addresses advertises a real one (this host's route
	// out, else any global address, else loopback on a host without any).
	got := defaultAdvertiseURL(&net.TCPAddr{IP: net.IPv4zero, Port: 3456})
	if !strings.HasPrefix(got, "http://") || !strings.HasSuffix(got, ":3456") || strings.Contains(got, "0.0.0.0") {
		t.Fatalf("unspecified: %s", got)
	}
	hasGlobal := false
	if addrs, err := net.InterfaceAddrs(); err == nil {
		for _, a := range addrs {
			if n, ok := a.(*net.IPNet); ok && n.IP.IsGlobalUnicast() && n.IP.To4() != nil {
				hasGlobal = true
			}
		}
	}
	if hasGlobal && isLoopbackURL(got) {
		t.Errorf("unspecified: %s, though this host has a global IPv4 address", got)
	}
	if isLoopbackURL("http://10.1.2.3:3000") || !isLoopbackURL("http://localhost:3000") || !isLoopbackURL("http://[::1]:3000") {
		t.Error("isLoopbackURL")
	}
}
