//go:build wasip1

package main

import (
	"fmt"
	"net/netip"
	"strconv"
	"strings"
)

// target is what the templates render for one node.
type target struct {
	ID       int64
	Name     string // fqdn
	Short    string
	Domain   string
	Address  string // "" when the node has no admin address yet
	Netmask  string
	Gateway  string
	DNS      []string
	Env      Bootenv
	Server   string // http://host:port of the crowbar API as the machine reaches it
	Files    string // where kernels and initrds are served
	Token    string
	Keys     []string
	Callback string
}

func splitName(fqdn string) (short, domain string) {
	if i := strings.IndexByte(fqdn, '.'); i > 0 {
		return fqdn[:i], fqdn[i+1:]
	}
	return fqdn, ""
}

// netmask turns a prefix length into dotted form.
func netmask(bits int) string {
	m := ^uint32(0) << (32 - bits)
	return netip.AddrFrom4([4]byte{byte(m >> 24), byte(m >> 16), byte(m >> 8), byte(m)}).String()
}

// discoveryScript boots sledgehammer, the discovery image, whose agent
// joins crowbar at server with token (none: it waits for one).
func discoveryScript(server, files, token string) string {
	env := bootenvs["sledgehammer"]
	join := ""
	note := ""
	if token != "" {
		join = " crowbar.token=" + token
	} else {
		note = "# no join_token in the provisioner settings: the agent cannot join until one is set\n"
	}
	return fmt.Sprintf(`#!ipxe
# crowbar: discovery (sledgehammer)
%skernel %s/%s %s provisioner.web=%s crowbar.url=%s/api/v2%s BOOTIF=01-${net0/mac:hexhyp} initrd=%s
initrd %s/%s
boot
`, note, files, env.Kernel, env.Append, files, server, join, baseName(env.Initrd), files, env.Initrd)
}

// localScript boots the first disk.
func localScript(name string) string {
	return fmt.Sprintf(`#!ipxe
# crowbar: %s boots from its local disk
sanboot --no-describe --drive 0x80 || exit
`, name)
}

// installScript starts the installer with its answer file.
func installScript(t *target) string {
	answer := "preseed"
	arg := "url"
	if t.Env.Family == "redhat" {
		answer, arg = "kickstart", "inst.ks"
		if strings.HasSuffix(t.Env.OS, "-6.5") {
			arg = "ks"
		}
	}
	url := fmt.Sprintf("%s/provisioner/v2/nodes/%d/%s?token=%s", t.Server, t.ID, answer, t.Token)
	return fmt.Sprintf(`#!ipxe
# crowbar: install %s on %s
kernel %s/%s %s %s=%s hostname=%s initrd=%s
initrd %s/%s
boot
`, t.Env.OS, t.Name, t.Files, t.Env.Kernel, t.Env.Append, arg, url, t.Short, baseName(t.Env.Initrd), t.Files, t.Env.Initrd)
}

func baseName(p string) string { return p[strings.LastIndexByte(p, '/')+1:] }

// mirrorParts splits a mirror URL into host and directory for debconf.
func mirrorParts(mirror string) (host, dir string) {
	rest := strings.TrimPrefix(strings.TrimPrefix(mirror, "http://"), "https://")
	if i := strings.IndexByte(rest, '/'); i >= 0 {
		return rest[:i], rest[i:]
	}
	return rest, "/"
}

// callbackCommand is the shell line the installed system runs last.
func callbackCommand(t *target) string {
	return fmt.Sprintf(`curl -fsS -X PUT -H 'X-Provisioner-Token: %s' %s`, t.Token, t.Callback)
}

// preseed renders a debian-installer answer file (debconf selections).
func preseed(t *target) string {
	host, dir := mirrorParts(t.Env.Mirror)
	var b strings.Builder
	line := func(q, typ, v string) { fmt.Fprintf(&b, "d-i %s %s %s\n", q, typ, v) }
	fmt.Fprintf(&b, "# crowbar: install %s on %s\n", t.Env.OS, t.Name)
	line("debian-installer/locale", "string", "en_US.UTF-8")
	line("keyboard-configuration/xkb-keymap", "select", "us")
	line("netcfg/choose_interface", "select", "auto")
	if t.Address != "" {
		line("netcfg/disable_autoconfig", "boolean", "true")
		line("netcfg/get_ipaddress", "string", t.Address)
		line("netcfg/get_netmask", "string", t.Netmask)
		line("netcfg/get_gateway", "string", t.Gateway)
		line("netcfg/get_nameservers", "string", strings.Join(t.DNS, " "))
		line("netcfg/confirm_static", "boolean", "true")
	}
	line("netcfg/get_hostname", "string", t.Short)
	line("netcfg/get_domain", "string", t.Domain)
	line("netcfg/hostname", "string", t.Name)
	line("mirror/country", "string", "manual")
	line("mirror/http/hostname", "string", host)
	line("mirror/http/directory", "string", dir)
	line("mirror/http/proxy", "string", "")
	line("mirror/suite", "string", t.Env.Suite)
	line("clock-setup/utc", "boolean", "true")
	line("time/zone", "string", "UTC")
	line("passwd/root-login", "boolean", "true")
	line("passwd/make-user", "boolean", "false")
	line("passwd/root-password-crypted", "password", "!")
	line("partman-auto/method", "string", "regular")
	line("partman-auto/choose_recipe", "select", "atomic")
	line("partman-partitioning/confirm_write_new_label", "boolean", "true")
	line("partman/choose_partition", "select", "finish")
	line("partman/confirm", "boolean", "true")
	line("partman/confirm_nooverwrite", "boolean", "true")
	line("pkgsel/include", "string", "openssh-server curl")
	line("grub-installer/only_debian", "boolean", "true")
	line("finish-install/reboot_in_progress", "note", "")
	var late []string
	for _, k := range t.Keys {
		late = append(late, fmt.Sprintf(`mkdir -p /root/.ssh; echo '%s' >> /root/.ssh/authorized_keys`, k))
	}
	late = append(late, callbackCommand(t))
	line("preseed/late_command", "string", `in-target sh -c "`+strings.Join(late, "; ")+`"`)
	return b.String()
}

// kickstart renders an anaconda kickstart file.
func kickstart(t *target) string {
	var b strings.Builder
	fmt.Fprintf(&b, "# crowbar: install %s on %s\n", t.Env.OS, t.Name)
	b.WriteString("text\n")
	fmt.Fprintf(&b, "url --url=%s\n", t.Env.Mirror)
	b.WriteString("lang en_US.UTF-8\nkeyboard us\ntimezone UTC --utc\n")
	if t.Address != "" {
		fmt.Fprintf(&b, "network --bootproto=static --ip=%s --netmask=%s --gateway=%s", t.Address, t.Netmask, t.Gateway)
		if len(t.DNS) > 0 {
			fmt.Fprintf(&b, " --nameserver=%s", strings.Join(t.DNS, ","))
		}
		fmt.Fprintf(&b, " --hostname=%s\n", t.Name)
	} else {
		fmt.Fprintf(&b, "network --bootproto=dhcp --hostname=%s\n", t.Name)
	}
	b.WriteString("rootpw --lock\nzerombr\nclearpart --all --initlabel\nautopart\nbootloader --location=mbr\nreboot\n")
	b.WriteString("%packages\n@core\nopenssh-server\ncurl\n%end\n")
	b.WriteString("%post\n")
	if len(t.Keys) > 0 {
		b.WriteString("mkdir -p /root/.ssh\nchmod 700 /root/.ssh\n")
		for _, k := range t.Keys {
			fmt.Fprintf(&b, "echo '%s' >> /root/.ssh/authorized_keys\n", k)
		}
	}
	b.WriteString(callbackCommand(t) + "\n%end\n")
	return b.String()
}

// Reservation is one DHCP reservation.
type Reservation struct {
	MAC        string `json:"mac"`
	Address    string `json:"address"`
	Hostname   string `json:"hostname"`
	Node       string `json:"node"`
	NextServer string `json:"next_server"`
	BootFile   string `json:"boot_file"`
}

// hostsfile renders reservations as a dnsmasq dhcp-hostsfile: one
// dhcp-host value per line.
func hostsfile(rs []Reservation) string {
	var b strings.Builder
	b.WriteString("# crowbar: DHCP reservations (dnsmasq dhcp-hostsfile)\n")
	for _, r := range rs {
		fmt.Fprintf(&b, "%s,set:crowbar,%s,%s\n", r.MAC, r.Address, r.Hostname)
	}
	return b.String()
}

// dnsmasqConf renders a dnsmasq configuration fragment: the reservations
// and how crowbar's machines boot (PXE loads iPXE, iPXE chains to crowbar).
func dnsmasqConf(rs []Reservation, s *Settings, server string) string {
	var b strings.Builder
	b.WriteString("# crowbar: DHCP configuration for dnsmasq (conf-file or conf-dir fragment)\n")
	if loopback(server) {
		fmt.Fprintf(&b, "# warning: %s is this host's loopback, which booting machines cannot reach:\n", server)
		b.WriteString("# start crowbar with --advertise-url, or set server_url in /provisioner/v2/settings\n")
	}
	for _, r := range rs {
		fmt.Fprintf(&b, "dhcp-host=%s,set:crowbar,%s,%s\n", r.MAC, r.Address, r.Hostname)
	}
	b.WriteString("dhcp-match=set:ipxe,175\n")
	fmt.Fprintf(&b, "dhcp-boot=tag:!ipxe,%s,,%s\n", s.BootFile, s.NextServer)
	fmt.Fprintf(&b, "dhcp-boot=tag:ipxe,%s/provisioner/v2/boot.ipxe\n", server)
	return b.String()
}

// chainScript is what iPXE fetches first: it chains to the machine's own
// script, named by its MAC.
func chainScript(server string) string {
	return "#!ipxe\n# crowbar: fetch this machine's boot script\nchain " + server + "/provisioner/v2/nodes/${net0/mac}/ipxe\n"
}

func itoa(n int64) string { return strconv.FormatInt(n, 10) }
