//go:build !wasip1

package barclamps_test

import (
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/crowbar-go/crowbar/api/apitest"
	"github.com/crowbar-go/crowbar/core/auth"
	"github.com/crowbar-go/crowbar/core/store"
	"github.com/crowbar-go/crowbar/core/store/storetest"
)

// tool finds a system tool the Makefile installs (make test-tools).
func tool(t *testing.T, name string) string {
	t.Helper()
	if p, err := exec.LookPath(name); err == nil {
		return p
	}
	for _, dir := range []string{"/usr/sbin", "/sbin"} {
		if p := filepath.Join(dir, name); fileExists(p) {
			return p
		}
	}
	t.Fatalf("%s is missing: run make test-tools (make test does)", name)
	return ""
}

func fileExists(p string) bool { _, err := os.Stat(p); return err == nil }

// open fetches path as a booting machine does: without credentials.
func open(s *apitest.Server, method, path, body string, header ...string) *apitest.Response {
	return s.Do(method, path, body, append([]string{"Authorization", ""}, header...)...)
}

// startInstall binds crowbar-installed-node to a new node with mac and os,
// commits it and waits until the install waits for its callback; it
// returns the node's id and the iPXE script.
func startInstall(t *testing.T, s *apitest.Server, name, mac, os string) (int, string) {
	t.Helper()
	n := s.Must(201, "POST", "/api/v2/nodes", fmt.Sprintf(`{"name": %q, "alive": true, "hint": {"admin_macs": [%q]}}`, name, mac)).Object(t)
	s.Must(201, "POST", "/api/v2/node_roles", fmt.Sprintf(`{"node": %q, "role": "crowbar-installed-node"}`, name))
	s.Must(200, "PUT", "/api/v2/nodes/"+name+"/attribs/provisioner-target_os", fmt.Sprintf(`{"value": %q}`, os))
	s.Must(200, "PUT", "/api/v2/nodes/"+name+"/commit", "")
	settle(t, s)
	nr := nodeRole(t, s, name, "provisioner-os-install")
	if nr["state_name"] != "transition" || !strings.Contains(nr["runlog"].(string), "installing "+os) {
		t.Fatalf("install node-role: %v", nr)
	}
	if b := s.Must(200, "GET", "/api/v2/nodes/"+name, "").Object(t)["bootenv"]; b != os+"-install" {
		t.Fatalf("bootenv during the install: %v", b)
	}
	r := open(s, "GET", "/provisioner/v2/nodes/"+mac+"/ipxe", "")
	if r.Status != 200 {
		t.Fatalf("ipxe: %d %s", r.Status, r.Body)
	}
	return int(n["id"].(float64)), string(r.Body)
}

var tokenRE = regexp.MustCompile(`token=([0-9a-f]+)`)

func TestProvisionerInstallsUbuntu(t *testing.T) {
	t.Parallel()
	debconf := tool(t, "debconf-set-selections")
	storetest.Each(t, func(t *testing.T, st *store.Store) {
		s := firstParty(t, st)
		key := "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIBfakefakefakefakefakefakefakefakefakefakefake op@example.com"
		s.Must(200, "PUT", "/provisioner/v2/settings", fmt.Sprintf(`{"access_keys": [%q]}`, key))
		id, script := startInstall(t, s, "u1.example.com", "52:54:00:00:00:01", "ubuntu-24.04")
		if !strings.HasPrefix(script, "#!ipxe\n") || !strings.Contains(script, "ubuntu-24.04/install/linux") ||
			!strings.Contains(script, fmt.Sprintf("url=%s/provisioner/v2/nodes/%d/preseed?token=", s.URL, id)) {
			t.Fatalf("install script:\n%s", script)
		}
		token := tokenRE.FindStringSubmatch(script)[1]
		r := open(s, "GET", fmt.Sprintf("/provisioner/v2/nodes/%d/preseed?token=%s", id, token), "")
		if r.Status != 200 {
			t.Fatalf("preseed: %d %s", r.Status, r.Body)
		}
		pre := string(r.Body)
		for _, want := range []string{"d-i netcfg/get_ipaddress string 192.168.124.81\n", "d-i netcfg/get_netmask string 255.255.255.0\n",
			"d-i netcfg/get_gateway string 192.168.124.1\n", "d-i netcfg/hostname string u1.example.com\n",
			"d-i mirror/suite string noble\n", key, "X-Provisioner-Token: " + token,
			fmt.Sprintf("%s/provisioner/v2/nodes/%d/installed", s.URL, id)} {
			if !strings.Contains(pre, want) {
				t.Errorf("preseed lacks %q:\n%s", want, pre)
			}
		}
		// It must parse as debconf selections: debconf-set-selections checks.
		file := filepath.Join(t.TempDir(), "preseed.cfg")
		os.WriteFile(file, r.Body, 0o600) //nolint:errcheck
		if out, err := exec.Command(debconf, "--checkonly", file).CombinedOutput(); err != nil || len(out) > 0 {
			t.Fatalf("debconf-set-selections --checkonly: %v\n%s", err, out)
		}
		os.WriteFile(file, []byte("d-i netcfg/hostname strin x\n"), 0o600) //nolint:errcheck
		if out, err := exec.Command(debconf, "--checkonly", file).CombinedOutput(); err == nil && len(out) == 0 {
			t.Fatal("debconf-set-selections accepted a bad type; the check above proves nothing")
		}
		for _, bad := range []string{"", "?token=wrong", "?token=" + token[:10]} {
			if r := open(s, "GET", fmt.Sprintf("/provisioner/v2/nodes/%d/preseed%s", id, bad), ""); r.Status != 401 {
				t.Fatalf("preseed with token %q: %d", bad, r.Status)
			}
		}
		if r := open(s, "GET", fmt.Sprintf("/provisioner/v2/nodes/%d/kickstart?token=%s", id, token), ""); r.Status != 404 {
			t.Fatalf("kickstart for an ubuntu install: %d %s", r.Status, r.Body)
		}
		if r := open(s, "GET", "/provisioner/v2/nodes/x/preseed?token="+token, ""); r.Status != 400 {
			t.Fatalf("preseed of node x: %d", r.Status)
		}
		if r := open(s, "PUT", fmt.Sprintf("/provisioner/v2/nodes/%d/installed", id), "", "X-Provisioner-Token", "wrong"); r.Status != 401 {
			t.Fatalf("callback with a wrong token: %d", r.Status)
		}
		if r := open(s, "PUT", fmt.Sprintf("/provisioner/v2/nodes/%d/installed", id), `{"done": 1}`, "X-Provisioner-Token", token); r.Status != 400 {
			t.Fatalf("callback with an unknown field: %d", r.Status)
		}
		if r := open(s, "PUT", fmt.Sprintf("/provisioner/v2/nodes/%d/installed", id), "", "X-Provisioner-Token", token); r.Status != 200 {
			t.Fatalf("callback: %d %s", r.Status, r.Body)
		}
		settle(t, s)
		if nr := nodeRole(t, s, "u1.example.com", "crowbar-installed-node"); nr["state_name"] != "active" {
			t.Fatalf("after the callback: %v", nr)
		}
		if b := s.Must(200, "GET", "/api/v2/nodes/u1.example.com", "").Object(t)["bootenv"]; b != "local" {
			t.Fatalf("bootenv after the install: %v", b)
		}
		r = open(s, "GET", "/provisioner/v2/nodes/52-54-00-00-00-01/ipxe", "")
		if !strings.HasPrefix(string(r.Body), "#!ipxe\n") || !strings.Contains(string(r.Body), "sanboot") {
			t.Fatalf("installed node's script: %s", r.Body)
		}
		// Destructive: a data change does not install again.
		nr := nodeRole(t, s, "u1.example.com", "provisioner-os-install")
		s.Must(200, "PUT", fmt.Sprintf("/api/v2/node_roles/%v", nr["id"]), `{"proposed_data": {"crowbar": {"target_os": "debian-12"}}}`)
		s.Must(200, "PUT", "/api/v2/nodes/u1.example.com/commit", "")
		settle(t, s)
		if again := nodeRole(t, s, "u1.example.com", "provisioner-os-install"); again["run_count"].(float64) != 1 || again["state_name"] != "active" {
			t.Fatalf("the install ran again: %v", again)
		}
	})
}

// kickstartCommands are the kickstart commands the template may use.
var kickstartCommands = map[string]bool{"text": true, "url": true, "lang": true, "keyboard": true, "timezone": true,
	"network": true, "rootpw": true, "zerombr": true, "clearpart": true, "autopart": true, "bootloader": true, "reboot": true}

// checkKickstart parses ks as kickstart: commands, then %packages and %post
// sections each closed by %end.
func checkKickstart(t *testing.T, ks string) {
	t.Helper()
	section := ""
	sections := map[string]bool{}
	for i, line := range strings.Split(strings.TrimRight(ks, "\n"), "\n") {
		f := strings.Fields(line)
		switch {
		case len(f) == 0 || strings.HasPrefix(line, "#"):
		case f[0] == "%packages" || f[0] == "%post":
			if section != "" {
				t.Fatalf("line %d: %s inside %s", i+1, f[0], section)
			}
			section, sections[f[0]] = f[0], true
		case f[0] == "%end":
			if section == "" {
				t.Fatalf("line %d: %%end outside a section", i+1)
			}
			section = ""
		case section == "" && !kickstartCommands[f[0]]:
			t.Fatalf("line %d: unknown kickstart command %q", i+1, f[0])
		}
	}
	if section != "" || !sections["%packages"] || !sections["%post"] {
		t.Fatalf("kickstart sections: open %q, seen %v", section, sections)
	}
}

func TestProvisionerKickstartAndFailedInstall(t *testing.T) {
	t.Parallel()
	storetest.Each(t, func(t *testing.T, st *store.Store) {
		s := firstParty(t, st)
		id, script := startInstall(t, s, "r1.example.com", "52:54:00:00:00:02", "rocky-9")
		if !strings.Contains(script, fmt.Sprintf("inst.ks=%s/provisioner/v2/nodes/%d/kickstart?token=", s.URL, id)) {
			t.Fatalf("rocky install script:\n%s", script)
		}
		token := tokenRE.FindStringSubmatch(script)[1]
		r := open(s, "GET", fmt.Sprintf("/provisioner/v2/nodes/%d/kickstart", id), "", "X-Provisioner-Token", token)
		if r.Status != 200 {
			t.Fatalf("kickstart: %d %s", r.Status, r.Body)
		}
		ks := string(r.Body)
		checkKickstart(t, ks)
		for _, want := range []string{"url --url=http://dl.rockylinux.org/pub/rocky/9/BaseOS/x86_64/os\n",
			"network --bootproto=static --ip=192.168.124.81 --netmask=255.255.255.0 --gateway=192.168.124.1 --nameserver=192.168.124.1 --hostname=r1.example.com\n",
			"X-Provisioner-Token: " + token} {
			if !strings.Contains(ks, want) {
				t.Errorf("kickstart lacks %q:\n%s", want, ks)
			}
		}
		// The installer reports a failure: ERROR with its log.
		r = open(s, "PUT", fmt.Sprintf("/provisioner/v2/nodes/%d/installed", id), `{"failed": true, "log": "no disk found"}`, "X-Provisioner-Token", token)
		if r.Status != 200 {
			t.Fatalf("failure report: %d %s", r.Status, r.Body)
		}
		settle(t, s)
		nr := nodeRole(t, s, "r1.example.com", "provisioner-os-install")
		if nr["state_name"] != "error" || !strings.Contains(nr["runlog"].(string), "no disk found") {
			t.Fatalf("after a failed install: %v", nr)
		}
		// Retried, it installs with a fresh token; the old one is spent.
		s.Must(200, "PUT", fmt.Sprintf("/api/v2/node_roles/%v/retry", nr["id"]), "")
		settle(t, s)
		script = string(open(s, "GET", "/provisioner/v2/nodes/52:54:00:00:00:02/ipxe", "").Body)
		if fresh := tokenRE.FindStringSubmatch(script)[1]; fresh == token {
			t.Fatal("the retry reused the install token")
		}
		if r := open(s, "GET", fmt.Sprintf("/provisioner/v2/nodes/%d/kickstart?token=%s", id, token), ""); r.Status != 401 {
			t.Fatalf("the spent token still works: %d", r.Status)
		}
	})
}

func TestProvisionerRoutes(t *testing.T) {
	t.Parallel()
	dnsmasq := tool(t, "dnsmasq")
	storetest.Each(t, func(t *testing.T, st *store.Store) {
		s := firstParty(t, st)
		envs := s.Must(200, "GET", "/provisioner/v2/bootenvs", "").List(t)
		names := map[any]bool{}
		for _, e := range envs {
			names[e["name"]] = true
		}
		for _, want := range []string{"sledgehammer", "local", "ubuntu-12.04-install", "ubuntu-24.04-install", "debian-12-install", "rocky-9-install"} {
			if !names[want] {
				t.Errorf("bootenv %s missing: %v", want, names)
			}
		}
		s.Must(200, "GET", "/provisioner/v2/bootenvs/local", "")
		s.Must(404, "GET", "/provisioner/v2/bootenvs/windows", "")
		s.Must(401, "GET", "/provisioner/v2/bootenvs", "", "Authorization", "")

		// Unknown machines are discovered; malformed MACs are refused.
		r := open(s, "GET", "/provisioner/v2/nodes/aa:bb:cc:dd:ee:ff/ipxe", "")
		if r.Status != 200 || !strings.HasPrefix(string(r.Body), "#!ipxe\n") || !strings.Contains(string(r.Body), "sledgehammer/vmlinuz0") ||
			!strings.Contains(string(r.Body), "crowbar.url="+s.URL+"/api/v2") {
			t.Fatalf("discovery script: %d %s", r.Status, r.Body)
		}
		if r := open(s, "GET", "/provisioner/v2/nodes/not-a-mac/ipxe", ""); r.Status != 400 {
			t.Fatalf("bad MAC: %d", r.Status)
		}
		if r := open(s, "GET", "/provisioner/v2/boot.ipxe", ""); !strings.Contains(string(r.Body), "chain "+s.URL+"/provisioner/v2/nodes/${net0/mac}/ipxe") {
			t.Fatalf("chain script: %s", r.Body)
		}
		// A node whose bootenv names an install nobody started boots its disk.
		s.Must(201, "POST", "/api/v2/nodes", `{"name": "odd.example.com", "bootenv": "debian-12-install", "hint": {"admin_macs": ["52:54:00:00:00:09"]}}`)
		if r := open(s, "GET", "/provisioner/v2/nodes/52:54:00:00:00:09/ipxe", ""); !strings.Contains(string(r.Body), "sanboot") {
			t.Fatalf("install bootenv without an install: %s", r.Body)
		}

		// Settings.
		for _, c := range []struct {
			code int
			body string
		}{
			{400, `{"next_server": `}, {400, `{"colour": "red"}`}, {400, `{"access_keys": "ssh-rsa AAAA"}`},
			{422, `{"next_server": "tftp.example.com"}`}, {422, `{"boot_file": "a,b"}`}, {422, `{"files_url": "ftp://x"}`},
			{422, `{"access_keys": ["not a key"]}`}, {422, `{"access_keys": ["ssh-rsa AAAA it's"]}`},
			{422, `{"boot_file_efi": ""}`}, {422, `{"join_token": "hunter2"}`}, {422, `{"lease_seconds": 5}`},
			{400, `{"lease_seconds": "1h"}`},
		} {
			s.Must(c.code, "PUT", "/provisioner/v2/settings", c.body)
		}
		if got := s.Must(200, "GET", "/provisioner/v2/settings", "").Object(t); got["boot_file"] != "undionly.kpxe" || got["next_server"] != "" ||
			got["boot_file_efi"] != "ipxe.efi" || got["join_token"] != "" || got["lease_seconds"] != 3600.0 {
			t.Fatalf("bad settings were stored: %v", got)
		}

		// The discovery image joins with the join token in its settings,
		// put on its kernel command line; readers never see the token.
		join := s.JoinToken(time.Hour)
		s.Must(200, "PUT", "/provisioner/v2/settings", fmt.Sprintf(`{"join_token": %q}`, join))
		if r := open(s, "GET", "/provisioner/v2/nodes/aa:bb:cc:dd:ee:ff/ipxe", ""); !strings.Contains(string(r.Body), " crowbar.token="+join+" ") {
			t.Fatalf("discovery script without the join token: %s", r.Body)
		}
		if got := s.Must(200, "GET", "/provisioner/v2/settings", "").Object(t); got["join_token"] != join {
			t.Fatalf("an admin reads the join token as %v", got["join_token"])
		}
		s.AddUser("reader", "reader-password", auth.RoleReader, true)
		rt, _, _ := s.Auth.MintToken(&auth.Caller{Username: "reader", Role: auth.RoleReader}, time.Hour)
		if got := s.Must(200, "GET", "/provisioner/v2/settings", "", "Authorization", "Bearer "+rt).Object(t); got["join_token"] == join || got["join_token"] == "" {
			t.Fatalf("a reader reads the join token as %v", got["join_token"])
		}
		s.Must(403, "PUT", "/provisioner/v2/settings", `{"join_token": ""}`, "Authorization", "Bearer "+rt)
		s.Must(200, "PUT", "/provisioner/v2/settings", `{"join_token": ""}`)

		// DHCP reservations: nodes with an admin MAC and an admin address.
		for i, mac := range []string{"52:54:00:00:00:0a", "52-54-00-00-00-0B"} {
			name := fmt.Sprintf("d%d.example.com", i)
			s.Must(201, "POST", "/api/v2/nodes", fmt.Sprintf(`{"name": %q, "hint": {"admin_macs": [%q]}}`, name, mac))
			s.Must(201, "POST", "/network/v2/networks/admin/allocate", fmt.Sprintf(`{"node": %q}`, name))
		}
		res := s.Must(200, "GET", "/provisioner/v2/dhcp", "").List(t)
		if len(res) != 2 || res[0]["mac"] != "52:54:00:00:00:0a" || res[0]["address"] != "192.168.124.81" || res[0]["hostname"] != "d0" ||
			res[0]["next_server"] != "192.168.124.10" || res[0]["boot_file"] != "undionly.kpxe" || res[1]["mac"] != "52:54:00:00:00:0b" {
			t.Fatalf("reservations: %v", res)
		}
		// The plan crowbar server's own DHCP serves.
		plan := s.Must(200, "GET", "/provisioner/v2/dhcp/config", "").Object(t)
		pj, _ := json.Marshal(plan)
		for _, want := range []string{`"subnet":"192.168.124.0/24"`, `"router":"192.168.124.1"`, `"pool":[{"first":"192.168.124.21","last":"192.168.124.80"}]`,
			`{"address":"192.168.124.81","hostname":"d0","mac":"52:54:00:00:00:0a"}`, `"boot_file":"undionly.kpxe"`, `"boot_file_efi":"ipxe.efi"`,
			`"boot_url":"` + s.URL + `/provisioner/v2/boot.ipxe"`, `"lease_seconds":3600`, `"next_server":""`} {
			if !strings.Contains(string(pj), want) {
				t.Errorf("dhcp/config lacks %s: %s", want, pj)
			}
		}
		s.Must(401, "GET", "/provisioner/v2/dhcp/config", "", "Authorization", "")
		s.Must(400, "GET", "/provisioner/v2/dhcp?format=xml", "")
		s.Must(401, "GET", "/provisioner/v2/dhcp", "", "Authorization", "")
		hosts := string(s.Must(200, "GET", "/provisioner/v2/dhcp?format=hostsfile", "").Body)
		if !strings.Contains(hosts, "52:54:00:00:00:0a,set:crowbar,192.168.124.81,d0\n") {
			t.Fatalf("hostsfile:\n%s", hosts)
		}
		conf := string(s.Must(200, "GET", "/provisioner/v2/dhcp?format=dnsmasq", "").Body)
		// dnsmasq --test checks configuration files but not the contents of a
		// dhcp-hostsfile, so the hostsfile is checked as dhcp-host options.
		var asOptions strings.Builder
		for _, line := range strings.Split(hosts, "\n") {
			if line != "" && !strings.HasPrefix(line, "#") {
				asOptions.WriteString("dhcp-host=" + line + "\n")
			}
		}
		dir := t.TempDir()
		for name, text := range map[string]string{"crowbar.conf": conf, "hosts.conf": asOptions.String()} {
			file := filepath.Join(dir, name)
			os.WriteFile(file, []byte(text), 0o600) //nolint:errcheck
			out, err := exec.Command(dnsmasq, "--test", "--conf-file="+file).CombinedOutput()
			if err != nil || !strings.Contains(string(out), "syntax check OK") {
				t.Fatalf("dnsmasq --test %s: %v\n%s\n%s", name, err, out, text)
			}
		}
		// The check can fail: a broken line is caught.
		broken := filepath.Join(dir, "broken.conf")
		os.WriteFile(broken, []byte("dhcp-host=52:54:zz,,,\n"), 0o600) //nolint:errcheck
		if err := exec.Command(dnsmasq, "--test", "--conf-file="+broken).Run(); err == nil {
			t.Fatal("dnsmasq --test accepted a broken line; the check above proves nothing")
		}

		// Operator view; a deleted node's install is forgotten.
		if v := s.Must(200, "GET", "/provisioner/v2/nodes/d0.example.com", "").Object(t); v["bootenv"] != "sledgehammer" || v["macs"].([]any)[0] != "52:54:00:00:00:0a" {
			t.Fatalf("node view: %v", v)
		}
		s.Must(404, "GET", "/provisioner/v2/nodes/ghost.example.com", "")
	})
}

// TestProvisionerAdvertisedURL: what is handed to machines names the URL
// the server advertises (or the settings' server_url), never the host the
// operator's request used, such as 127.0.0.1.
func TestProvisionerAdvertisedURL(t *testing.T) {
	t.Parallel()
	storetest.Each(t, func(t *testing.T, st *store.Store) {
		s := firstParty(t, st, func(su *apitest.Setup) { su.API.Advertise = "http://192.0.2.10:3000/" })
		if !strings.Contains(s.URL, "127.0.0.1") {
			t.Fatalf("the test server is not on loopback (%s): the checks below prove nothing", s.URL)
		}
		expect := func(what, path, want string) string {
			t.Helper()
			r := s.Do("GET", path, "")
			if r.Status != 200 || !strings.Contains(string(r.Body), want) || strings.Contains(string(r.Body), "127.0.0.1") {
				t.Fatalf("%s: %d, want %q and no 127.0.0.1 in:\n%s", what, r.Status, want, r.Body)
			}
			return string(r.Body)
		}
		conf := expect("dnsmasq fragment", "/provisioner/v2/dhcp?format=dnsmasq", "dhcp-boot=tag:ipxe,http://192.0.2.10:3000/provisioner/v2/boot.ipxe\n")
		if strings.Contains(conf, "warning") {
			t.Fatalf("a reachable URL is warned about:\n%s", conf)
		}
		expect("chain script", "/provisioner/v2/boot.ipxe", "chain http://192.0.2.10:3000/provisioner/v2/nodes/${net0/mac}/ipxe")
		disc := expect("discovery script", "/provisioner/v2/nodes/52:54:00:00:00:01/ipxe", "crowbar.url=http://192.0.2.10:3000/api/v2")
		if !strings.Contains(disc, "http://192.0.2.10:8091/sledgehammer/") {
			t.Fatalf("discovery files not on the advertised host:\n%s", disc)
		}

		// The settings' server_url wins; bad ones are refused and change nothing.
		for _, bad := range []string{`"ftp://crowbar"`, `"http://"`, `"crowbar.example.com:3000"`, `"http://h/?a=b"`, `"http://u:p@h"`, `3000`} {
			s.Must(map[bool]int{true: 400, false: 422}[bad == "3000"], "PUT", "/provisioner/v2/settings", `{"server_url": `+bad+`}`)
		}
		if got := s.Must(200, "GET", "/provisioner/v2/settings", "").Object(t); got["server_url"] != "" {
			t.Fatalf("a refused server_url was stored: %v", got)
		}
		s.Must(200, "PUT", "/provisioner/v2/settings", `{"server_url": "https://crowbar.example.com/"}`)
		if got := s.Must(200, "GET", "/provisioner/v2/settings", "").Object(t); got["server_url"] != "https://crowbar.example.com" {
			t.Fatalf("server_url stored as %v", got["server_url"])
		}
		expect("dnsmasq fragment", "/provisioner/v2/dhcp?format=dnsmasq", "dhcp-boot=tag:ipxe,https://crowbar.example.com/provisioner/v2/boot.ipxe\n")
		disc = expect("discovery script", "/provisioner/v2/nodes/52:54:00:00:00:01/ipxe", "crowbar.url=https://crowbar.example.com/api/v2")
		if !strings.Contains(disc, "http://crowbar.example.com:8091/") {
			t.Fatalf("discovery files not on server_url's host:\n%s", disc)
		}

		// A loopback URL is served as asked, with a warning in the fragment.
		s.Must(200, "PUT", "/provisioner/v2/settings", `{"server_url": "http://127.0.0.1:3000"}`)
		if conf := string(s.Must(200, "GET", "/provisioner/v2/dhcp?format=dnsmasq", "").Body); !strings.Contains(conf, "# warning: http://127.0.0.1:3000 is this host's loopback") {
			t.Fatalf("no loopback warning:\n%s", conf)
		}
	})
}
