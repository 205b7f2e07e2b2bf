// Command discovery-image builds sledgehammer, crowbar's discovery image:
// a Debian kernel and an initramfs holding busybox, the kernel's network
// drivers and crowbar's agent (the agent-only build). Booted by the
// provisioner's sledgehammer bootenv, it brings its network up with DHCP,
// joins crowbar with the join token on its kernel command line and serves
// as the machine's agent.
//
//	go run ./cmd/discovery-image --agent bin/crowbar-agent --out bin/files
//
// writes <out>/sledgehammer/vmlinuz0 and initrd0.img, which crowbar
// server --files-dir <out> serves where the bootenv points.
package main

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"debug/elf"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"sort"
	"strings"
	"time"

	"github.com/cavaliergopher/cpio"
)

// drivers are the network drivers the image carries (with what they
// depend on): virtual machines' and the common server NICs'.
var drivers = []string{
	"virtio_net", "virtio_pci", "e1000", "e1000e", "igb", "igc", "ixgbe", "i40e", "ice",
	"tg3", "bnx2", "bnx2x", "bnxt_en", "r8169", "vmxnet3", "mlx4_en", "mlx5_core",
}

func main() {
	var o options
	flag.StringVar(&o.agent, "agent", "bin/crowbar-agent", "the agent-only crowbar binary (CGO_ENABLED=0 go build -tags agentonly ./cmd/crowbar)")
	flag.StringVar(&o.out, "out", "bin/files", "directory to write sledgehammer/vmlinuz0 and sledgehammer/initrd0.img under")
	flag.StringVar(&o.kernelDeb, "kernel-deb", "", "Debian kernel package (.deb) to take the kernel and modules from (default: download linux-image-amd64's with apt-get)")
	flag.StringVar(&o.busybox, "busybox", "/bin/busybox", "a static busybox (Debian's busybox-static)")
	flag.StringVar(&o.cache, "cache", "", "where downloaded kernel packages are kept (default the user's cache dir, crowbar/discovery)")
	flag.Parse()
	start := time.Now()
	if err := build(&o); err != nil {
		fmt.Fprintln(os.Stderr, "discovery-image:", err)
		os.Exit(1)
	}
	fmt.Fprintf(os.Stderr, "discovery-image: done in %s\n", time.Since(start).Round(time.Millisecond))
}

type options struct {
	agent, out, kernelDeb, busybox, cache string
}

func build(o *options) error {
	for what, p := range map[string]string{"--agent": o.agent, "--busybox": o.busybox} {
		if _, err := os.Stat(p); err != nil {
			return fmt.Errorf("%s: %w", what, err)
		}
	}
	deb := o.kernelDeb
	if deb == "" {
		var err error
		if deb, err = downloadKernel(o.cache); err != nil {
			return err
		}
	}
	k, err := readKernel(deb)
	if err != nil {
		return err
	}
	dir := filepath.Join(o.out, "sledgehammer")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	if err := writeFile(filepath.Join(dir, "vmlinuz0"), k.vmlinuz); err != nil {
		return err
	}
	initrd, err := initramfs(o, k)
	if err != nil {
		return err
	}
	if err := writeFile(filepath.Join(dir, "initrd0.img"), initrd); err != nil {
		return err
	}
	fmt.Fprintf(os.Stderr, "discovery-image: kernel %s (%d kB), initramfs %d kB with %d modules, in %s\n",
		k.version, len(k.vmlinuz)/1024, len(initrd)/1024, len(k.modules), dir)
	return nil
}

// writeFile replaces path atomically, so a server serving it never hands
// out half a file.
func writeFile(p string, b []byte) error {
	tmp := p + ".tmp"
	if err := os.WriteFile(tmp, b, 0o644); err != nil {
		return err
	}
	return os.Rename(tmp, p)
}

// downloadKernel fetches the package linux-image-amd64 depends on (the
// current Debian kernel) into the cache, once.
func downloadKernel(cache string) (string, error) {
	if cache == "" {
		dir, err := os.UserCacheDir()
		if err != nil {
			return "", err
		}
		cache = filepath.Join(dir, "crowbar", "discovery")
	}
	if err := os.MkdirAll(cache, 0o755); err != nil {
		return "", err
	}
	out, err := exec.Command("apt-cache", "depends", "--important", "linux-image-amd64").Output()
	if err != nil {
		return "", fmt.Errorf("apt-cache depends linux-image-amd64 (run apt-get update, or give --kernel-deb): %w", err)
	}
	var pkg string
	for _, line := range strings.Split(string(out), "\n") {
		if f := strings.Fields(line); len(f) == 2 && f[0] == "Depends:" && strings.HasPrefix(f[1], "linux-image-") {
			pkg = f[1]
		}
	}
	if pkg == "" {
		return "", fmt.Errorf("linux-image-amd64 depends on no kernel package:\n%s", out)
	}
	if m, _ := filepath.Glob(filepath.Join(cache, pkg+"_*.deb")); len(m) > 0 {
		return m[0], nil
	}
	fmt.Fprintf(os.Stderr, "discovery-image: downloading %s\n", pkg)
	cmd := exec.Command("apt-get", "download", "-q", pkg)
	cmd.Dir = cache
	if out, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("apt-get download %s: %w\n%s", pkg, err, out)
	}
	m, _ := filepath.Glob(filepath.Join(cache, pkg+"_*.deb"))
	if len(m) == 0 {
		return "", fmt.Errorf("apt-get download %s left no package in %s", pkg, cache)
	}
	return m[0], nil
}

type kernel struct {
	version string
	vmlinuz []byte
	deps    map[string][]string // module path → the module paths it needs
	modules map[string][]byte   // the modules the image carries, by path under lib/modules/<version>
}

// readKernel reads the kernel and the network drivers' modules out of a
// Debian kernel package (dpkg-deb streams its file system as a tar).
func readKernel(deb string) (*kernel, error) {
	cmd := exec.Command("dpkg-deb", "--fsys-tarfile", deb)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	pipe, err := cmd.StdoutPipe()
	if err != nil {
		return nil, err
	}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("dpkg-deb: %w", err)
	}
	k := &kernel{deps: map[string][]string{}, modules: map[string][]byte{}}
	all := map[string][]byte{}
	tr := tar.NewReader(pipe)
	for {
		h, err := tr.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return nil, fmt.Errorf("read %s: %w", deb, err)
		}
		name := strings.TrimPrefix(h.Name, "./")
		switch {
		case strings.HasPrefix(name, "boot/vmlinuz-") && h.Typeflag == tar.TypeReg:
			k.version = strings.TrimPrefix(name, "boot/vmlinuz-")
			if k.vmlinuz, err = io.ReadAll(tr); err != nil {
				return nil, err
			}
		case strings.HasPrefix(name, "lib/modules/") && strings.HasSuffix(name, ".ko") && h.Typeflag == tar.TypeReg:
			b, err := io.ReadAll(tr)
			if err != nil {
				return nil, err
			}
			parts := strings.SplitN(name, "/", 4) // lib modules <version> rest
			all[parts[3]] = b
		}
	}
	if err := cmd.Wait(); err != nil {
		return nil, fmt.Errorf("dpkg-deb --fsys-tarfile %s: %w: %s", deb, err, stderr.String())
	}
	if k.vmlinuz == nil {
		return nil, fmt.Errorf("%s holds no boot/vmlinuz-*", deb)
	}
	// Debian's package carries no modules.dep (depmod makes it on
	// install): each module's .modinfo section names what it depends on.
	byName := map[string]string{}
	for mod, b := range all {
		name, deps, err := modinfo(b)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", mod, err)
		}
		byName[strings.ReplaceAll(name, "-", "_")] = mod
		k.deps[mod] = deps
	}
	for mod, deps := range k.deps {
		paths := make([]string, 0, len(deps))
		for _, d := range deps {
			if p, ok := byName[strings.ReplaceAll(d, "-", "_")]; ok {
				paths = append(paths, p)
			} // else built into the kernel

		}
		k.deps[mod] = paths
	}
	var want []string
	for _, d := range drivers {
		mod, ok := byName[d]
		if !ok {
			continue // built in, or not in this kernel
		}
		want = append(want, closure(k.deps, mod)...)
	}
	for _, mod := range want {
		b, ok := all[mod]
		if !ok {
			return nil, fmt.Errorf("%s: module %s (needed by the network drivers) is not in the package's parts read", deb, mod)
		}
		k.modules[mod] = b
	}
	return k, nil
}

// closure is mod and everything it needs, transitively, in the order
// depmod writes them: each module before what it depends on, so loading
// from the end (as modprobe does) loads dependencies first.
func closure(deps map[string][]string, mod string) []string {
	seen := map[string]bool{}
	var post []string
	var walk func(string)
	walk = func(m string) {
		if seen[m] {
			return
		}
		seen[m] = true
		for _, d := range deps[m] {
			walk(d)
		}
		post = append(post, m)
	}
	walk(mod)
	for i, j := 0, len(post)-1; i < j; i, j = i+1, j-1 {
		post[i], post[j] = post[j], post[i]
	}
	return post
}

// modinfo reads a module's name and dependencies from its .modinfo
// section (NUL-separated key=value strings).
func modinfo(ko []byte) (name string, deps []string, err error) {
	f, err := elf.NewFile(bytes.NewReader(ko))
	if err != nil {
		return "", nil, err
	}
	sec := f.Section(".modinfo")
	if sec == nil {
		return "", nil, errors.New("no .modinfo section")
	}
	data, err := sec.Data()
	if err != nil {
		return "", nil, err
	}
	for _, kv := range bytes.Split(data, []byte{0}) {
		k, v, _ := strings.Cut(string(kv), "=")
		switch k {
		case "name":
			name = v
		case "depends":
			if v != "" {
				deps = strings.Split(v, ",")
			}
		}
	}
	if name == "" {
		return "", nil, errors.New(".modinfo names no module")
	}
	return name, deps, nil
}

// initramfs assembles the image: busybox, the agent, the modules with a
// modules.dep of their own, /init.
func initramfs(o *options, k *kernel) ([]byte, error) {
	busybox, err := os.ReadFile(o.busybox)
	if err != nil {
		return nil, err
	}
	agent, err := os.ReadFile(o.agent)
	if err != nil {
		return nil, err
	}
	var buf bytes.Buffer
	gz, _ := gzip.NewWriterLevel(&buf, gzip.BestSpeed)
	w := cpio.NewWriter(gz)
	ino := int64(1)
	add := func(name string, mode cpio.FileMode, body []byte, link string) error {
		h := &cpio.Header{Name: name, Mode: mode, Size: int64(len(body)), Links: 1, Inode: ino, ModTime: time.Unix(0, 0)}
		ino++
		if link != "" {
			h.Linkname, h.Size, body = link, int64(len(link)), []byte(link)
		}
		if mode&cpio.TypeDir != 0 {
			h.Links = 2
		}
		if err := w.WriteHeader(h); err != nil {
			return err
		}
		_, err := w.Write(body)
		return err
	}
	dirs := []string{"bin", "sbin", "dev", "proc", "sys", "tmp", "run", "etc", "root", "var", "var/lib", "var/lib/crowbar-agent", "usr", "usr/bin", "usr/sbin", "lib", "lib/modules", "lib/modules/" + k.version}
	modDirs := map[string]bool{}
	for mod := range k.modules {
		for d := path.Dir(mod); d != "." && !modDirs[d]; d = path.Dir(d) {
			modDirs[d] = true
		}
	}
	var md []string
	for d := range modDirs {
		md = append(md, "lib/modules/"+k.version+"/"+d)
	}
	sort.Strings(md)
	dirs = append(dirs, md...)
	for _, d := range dirs {
		if err := add(d, cpio.TypeDir|0o755, nil, ""); err != nil {
			return nil, err
		}
	}
	files := []struct {
		name string
		mode cpio.FileMode
		body []byte
	}{
		{"init", 0o755, []byte(initScript)},
		{"etc/udhcpc.script", 0o755, []byte(udhcpcScript)},
		{"etc/network-drivers", 0o644, []byte(strings.Join(drivers, "\n") + "\n")},
		{"etc/passwd", 0o644, []byte("root:x:0:0:root:/root:/bin/sh\n")},
		{"etc/group", 0o644, []byte("root:x:0:\n")},
		{"bin/busybox", 0o755, busybox},
		{"bin/crowbar", 0o755, agent},
	}
	var mods []string
	for mod := range k.modules {
		mods = append(mods, mod)
	}
	sort.Strings(mods)
	var dep strings.Builder
	for _, mod := range mods {
		files = append(files, struct {
			name string
			mode cpio.FileMode
			body []byte
		}{"lib/modules/" + k.version + "/" + mod, 0o644, k.modules[mod]})
		fmt.Fprintf(&dep, "%s: %s\n", mod, strings.Join(closure(k.deps, mod)[1:], " "))
	}
	files = append(files, struct {
		name string
		mode cpio.FileMode
		body []byte
	}{"lib/modules/" + k.version + "/modules.dep", 0o644, []byte(dep.String())})
	for _, f := range files {
		if err := add(f.name, cpio.TypeReg|f.mode, f.body, ""); err != nil {
			return nil, err
		}
	}
	if err := add("bin/sh", cpio.TypeSymlink|0o777, nil, "busybox"); err != nil {
		return nil, err
	}
	if err := w.Close(); err != nil {
		return nil, err
	}
	if err := gz.Close(); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}

// initScript is the image's /init: devices, drivers, DHCP on the boot
// interface, then the agent, joined with the token from the kernel
// command line (restarted if it stops).
const initScript = `#!/bin/sh
/bin/busybox mount -t devtmpfs devtmpfs /dev
exec 0</dev/console 1>/dev/console 2>&1
/bin/busybox --install -s /bin
export PATH=/bin
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t tmpfs tmpfs /tmp
mount -t tmpfs tmpfs /run
echo "sledgehammer: crowbar discovery image, kernel $(uname -r)"
for m in $(cat /etc/network-drivers); do modprobe "$m" 2>/dev/null; done
url= token= bootif=
for arg in $(cat /proc/cmdline); do
  case "$arg" in
    crowbar.url=*) url="${arg#crowbar.url=}" ;;
    crowbar.token=*) token="${arg#crowbar.token=}" ;;
    BOOTIF=*) bootif="${arg#BOOTIF=}" ;;
  esac
done
server="${url%/api/v2}"
ip link set lo up
# The interface the machine booted from: BOOTIF=01-52-54-…, else the
# first with a link.
mac=$(echo "${bootif#01-}" | tr - : | tr A-F a-f)
iface=
for i in 1 2 3 4 5 6 7 8 9 10; do
  for d in /sys/class/net/*; do
    n=${d##*/}; [ "$n" = lo ] && continue
    if [ -n "$mac" ] && [ "$(cat $d/address)" = "$mac" ]; then iface=$n; break; fi
    [ -z "$mac" ] && [ -z "$iface" ] && iface=$n
  done
  [ -n "$iface" ] && break
  sleep 1
done
if [ -z "$iface" ]; then echo "sledgehammer: no network interface (MAC $mac)"; exec sh; fi
ip link set "$iface" up
echo "sledgehammer: DHCP on $iface"
# udhcpc stays in the background once bound, renewing the lease.
until udhcpc -i "$iface" -s /etc/udhcpc.script -t 5 -T 2 -n; do echo "sledgehammer: no DHCP answer; retrying"; sleep 2; done
if [ -z "$server" ]; then echo "sledgehammer: no crowbar.url on the kernel command line"; exec sh; fi
if [ -z "$token" ]; then echo "sledgehammer: no crowbar.token on the kernel command line: set the provisioner's join_token"; fi
echo "sledgehammer: joining $server"
while true; do
  crowbar agent --server "$server" ${token:+--join-token "$token"} --state-dir /var/lib/crowbar-agent \
    --mac "$(cat /sys/class/net/$iface/address)" --reboot-command "reboot -f"
  echo "sledgehammer: the agent stopped ($?); restarting in 5 s"
  sleep 5
done
`

// udhcpcScript applies a lease (busybox udhcpc's hook).
const udhcpcScript = `#!/bin/sh
case "$1" in
  deconfig) ip addr flush dev "$interface"; ip link set "$interface" up ;;
  bound|renew)
    ip addr flush dev "$interface"
    ip addr add "$ip/$mask" dev "$interface"
    [ -n "$router" ] && ip route replace default via "${router%% *}" dev "$interface"
    : > /etc/resolv.conf
    for d in $dns; do echo "nameserver $d" >> /etc/resolv.conf; done
    echo "sledgehammer: $interface has $ip/$mask" ;;
esac
exit 0
`
