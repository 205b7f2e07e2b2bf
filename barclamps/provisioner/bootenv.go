//go:build wasip1

package main

import (
	"sort"
	"strings"
)

// Bootenv is what a node boots into next.
type Bootenv struct {
	Name        string `json:"name"`
	Description string `json:"description"`
	Kind        string `json:"kind"`             // discovery, local or install
	OS          string `json:"os,omitempty"`     // install: the target OS it installs
	Family      string `json:"family,omitempty"` // install: debian (preseed) or redhat (kickstart)
	Kernel      string `json:"kernel,omitempty"` // relative to the settings' files_url
	Initrd      string `json:"initrd,omitempty"`
	Append      string `json:"append,omitempty"` // kernel arguments before the answer file's
	Mirror      string `json:"mirror,omitempty"` // the OS's package mirror
	Suite       string `json:"suite,omitempty"`  // debian family: the release's code name
}

// osReleases are the operating systems crowbar installs: OpenCrowbar's
// (kept for the seed's workflows) and current ones.
var osReleases = []Bootenv{
	{OS: "ubuntu-12.04", Family: "debian", Suite: "precise", Mirror: "http://archive.ubuntu.com/ubuntu"},
	{OS: "ubuntu-22.04", Family: "debian", Suite: "jammy", Mirror: "http://archive.ubuntu.com/ubuntu"},
	{OS: "ubuntu-24.04", Family: "debian", Suite: "noble", Mirror: "http://archive.ubuntu.com/ubuntu"},
	{OS: "debian-12", Family: "debian", Suite: "bookworm", Mirror: "http://deb.debian.org/debian"},
	{OS: "redhat-6.5", Family: "redhat", Mirror: "http://mirror.example.com/rhel/6.5/os/x86_64"},
	{OS: "centos-6.5", Family: "redhat", Mirror: "http://vault.centos.org/6.5/os/x86_64"},
	{OS: "rocky-9", Family: "redhat", Mirror: "http://dl.rockylinux.org/pub/rocky/9/BaseOS/x86_64/os"},
}

// targetOSes lists the installable systems, for the attrib's schema.
func targetOSes() []any {
	out := []any{}
	for _, r := range osReleases {
		out = append(out, r.OS)
	}
	return out
}

const defaultOS = "ubuntu-24.04"

// bootenvs are every boot environment by name.
var bootenvs = func() map[string]Bootenv {
	m := map[string]Bootenv{
		"sledgehammer": {Name: "sledgehammer", Kind: "discovery",
			Description: "Discovery image: inventories the machine and registers it with crowbar",
			Kernel:      "sledgehammer/vmlinuz0", Initrd: "sledgehammer/initrd0.img",
			// make discovery-image builds both: a Debian kernel and an
			// initramfs of busybox and the agent.
			Append: "console=tty0 console=ttyS0,115200 panic=30"},
		"local": {Name: "local", Kind: "local", Description: "Boot from the local disk"},
	}
	for _, r := range osReleases {
		r.Name, r.Kind = r.OS+"-install", "install"
		r.Description = "Install " + r.OS
		r.Kernel, r.Initrd = r.OS+"/install/linux", r.OS+"/install/initrd.gz"
		if r.Family == "debian" {
			r.Append = "auto=true priority=critical netcfg/choose_interface=auto"
		} else {
			r.Kernel, r.Initrd = r.OS+"/install/vmlinuz", r.OS+"/install/initrd.img"
			r.Append = "ip=dhcp"
			if strings.HasSuffix(r.OS, "-6.5") {
				r.Append = "ksdevice=bootif"
			}
		}
		m[r.Name] = r
	}
	return m
}()

func sortedBootenvs() []Bootenv {
	out := make([]Bootenv, 0, len(bootenvs))
	for _, b := range bootenvs {
		out = append(out, b)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out
}
