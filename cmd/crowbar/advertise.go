//go:build !agentonly

package main

import (
	"fmt"
	"net"
	"net/url"
	"strconv"
	"strings"
)

// checkAdvertiseURL validates --advertise-url: an http(s) URL of a host,
// perhaps with a path prefix (behind a proxy), without query or
// credentials. It returns the URL without a trailing slash.
func checkAdvertiseURL(s string) (string, error) {
	u, err := url.Parse(s)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Hostname() == "" ||
		u.RawQuery != "" || u.Fragment != "" || u.User != nil {
		return "", usageError{fmt.Errorf("--advertise-url %q: want an http:// or https:// URL of a host, e.g. http://10.0.0.2:3000", s)}
	}
	return strings.TrimSuffix(s, "/"), nil
}

// defaultAdvertiseURL is how machines reach a server listening on addr when
// no --advertise-url is given: the address it listens on, or, listening on
// every address, the one this host uses towards its default route (else its
// first global unicast address). Loopback only when nothing else exists.
func defaultAdvertiseURL(addr net.Addr) string {
	ip, port := net.IPv4(127, 0, 0, 1), 3000
	if t, ok := addr.(*net.TCPAddr); ok {
		ip, port = t.IP, t.Port
	}
	if ip.IsUnspecified() {
		ip = outboundIP(ip.To4() == nil)
	}
	return "http://" + net.JoinHostPort(ip.String(), strconv.Itoa(port))
}

// outboundIP is this host's source address towards the default route:
// connecting a UDP socket picks it without sending anything. Hosts without
// a default route fall back to their first global unicast address, then to
// loopback.
func outboundIP(v6 bool) net.IP {
	probes := []string{"192.0.2.1:9", "[2001:db8::1]:9"} // documentation addresses (RFC 5737, 3849)
	if v6 {
		probes[0], probes[1] = probes[1], probes[0]
	}
	for _, p := range probes {
		c, err := net.Dial("udp", p)
		if err != nil {
			continue
		}
		ip := c.LocalAddr().(*net.UDPAddr).IP
		c.Close() //nolint:errcheck
		if ip.IsGlobalUnicast() {
			return ip
		}
	}
	if addrs, err := net.InterfaceAddrs(); err == nil {
		for _, a := range addrs {
			if n, ok := a.(*net.IPNet); ok && n.IP.IsGlobalUnicast() && n.IP.To4() != nil {
				return n.IP
			}
		}
	}
	return net.IPv4(127, 0, 0, 1)
}

// isLoopbackURL says whether machines elsewhere cannot reach u.
func isLoopbackURL(u string) bool {
	p, err := url.Parse(u)
	if err != nil {
		return false
	}
	if p.Hostname() == "localhost" {
		return true
	}
	ip := net.ParseIP(p.Hostname())
	return ip != nil && ip.IsLoopback()
}
