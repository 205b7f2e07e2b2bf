//go:build wasip1

// Command provisioner is the first-party barclamp that installs operating
// systems: boot environments, the iPXE scripts and answer files booting
// machines fetch, DHCP reservations for a real DHCP server, and the
// provisioner-os-install role, which sets a node's bootenv to an installer
// and waits in TRANSITION until the installed system calls back with its
// per-node token.
package main

import (
	"crypto/rand"
	"crypto/subtle"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"net/netip"
	"net/url"
	"regexp"
	"strconv"
	"strings"

	"github.com/crowbar-go/crowbar/sdk"
)

func init() {
	sdk.Register(&sdk.Barclamp{
		Name:        "provisioner",
		Version:     "1.0.0",
		Description: "Boot environments, iPXE, install answer files and DHCP reservations",
		Roles: []sdk.Role{
			{Name: "provisioner-server", Flags: []string{"server"},
				Description: "The provisioning service: this crowbar server answers boot requests"},
			{Name: "provisioner-os-install", Flags: []string{"destructive"},
				Requires:    []string{"network-admin"},
				Description: "Installs the node's target OS (destructive: it never runs again once installed)",
				Template:    map[string]any{"crowbar": map[string]any{"target_os": defaultOS}},
				OnTodo:      installTodo,
				Attribs: []sdk.Attrib{{Name: "provisioner-target_os", Map: "crowbar/target_os", Writable: true,
					Default:     defaultOS,
					Description: "The operating system to install on a node",
					// The seed's legacy form, which the server translates to JSON Schema.
					Schema: map[string]any{"required": true, "type": "str", "enum": targetOSes()}}},
			},
		},
		OnNodeDelete: nodeDeleted,
		Routes: []sdk.Route{
			{Method: "GET", Path: "/bootenvs", Handler: listBootenvs},
			{Method: "GET", Path: "/bootenvs/{name}", Handler: showBootenv},
			{Method: "GET", Path: "/settings", Handler: showSettings},
			{Method: "PUT", Path: "/settings", Handler: updateSettings},
			{Method: "GET", Path: "/dhcp", Handler: dhcp},
			{Method: "GET", Path: "/dhcp/config", Handler: dhcpConfig},
			{Method: "GET", Path: "/nodes/{id}", Handler: showNode},
			// What booting machines fetch: authenticated by MAC or token.
			{Method: "GET", Path: "/boot.ipxe", Handler: bootChain, Open: true},
			{Method: "GET", Path: "/nodes/{id}/ipxe", Handler: ipxe, Open: true},
			{Method: "GET", Path: "/nodes/{id}/preseed", Handler: answerFile("preseed"), Open: true},
			{Method: "GET", Path: "/nodes/{id}/kickstart", Handler: answerFile("kickstart"), Open: true},
			{Method: "PUT", Path: "/nodes/{id}/installed", Handler: installed, Open: true},
		},
	})
}

func main() {}

// Settings are the operator's provisioning choices.
type Settings struct {
	NextServer  string   `json:"next_server"`   // TFTP server for PXE; default: the admin network's admin range
	BootFile    string   `json:"boot_file"`     // what BIOS PXE loads first (an iPXE build)
	BootFileEFI string   `json:"boot_file_efi"` // what UEFI PXE loads first
	FilesURL    string   `json:"files_url"`     // kernels and initrds; default http://<server host>:8091
	ServerURL   string   `json:"server_url"`    // how machines reach crowbar; default the server's --advertise-url
	AccessKeys  []string `json:"access_keys"`   // SSH keys installed for root
	// JoinToken is the join token the discovery image's agent joins
	// with (crowbar join_tokens create); shown to operators and admins only.
	JoinToken string `json:"join_token"`
	// LeaseSeconds is how long the built-in DHCP server's leases last.
	LeaseSeconds int `json:"lease_seconds"`
}

const hiddenToken = "(set; shown to operators and admins)"

var joinTokenRule = regexp.MustCompile(`^cbj_[A-Za-z0-9_-]{16,128}$`)

var keyRule = regexp.MustCompile(`^(ssh-[a-z0-9]+|ecdsa-sha2-nistp[0-9]+|sk-[a-z0-9@.-]+) [A-Za-z0-9+/]+=*( [^'"\\\n]*)?$`)

func loadSettings() (*Settings, int64, error) {
	s := &Settings{BootFile: "undionly.kpxe", BootFileEFI: "ipxe.efi", LeaseSeconds: 3600, AccessKeys: []string{}}
	v, rev, found, err := sdk.KVGet("settings")
	if err != nil || !found {
		return s, 0, err
	}
	return s, rev, json.Unmarshal(v, s)
}

func showSettings(r *sdk.Request) *sdk.Response {
	s, _, err := loadSettings()
	if err != nil {
		return sdk.Error(500, "provisioner: %v", err)
	}
	return sdk.JSON(200, redact(r, s))
}

// redact hides the join token from readers: it lets a machine join.
func redact(r *sdk.Request, s *Settings) *Settings {
	if s.JoinToken != "" && (r.Caller == nil || r.Caller.Role == "reader") {
		cp := *s
		cp.JoinToken = hiddenToken
		return &cp
	}
	return s
}

func updateSettings(r *sdk.Request) *sdk.Response {
	s, rev, err := loadSettings()
	if err != nil {
		return sdk.Error(500, "provisioner: %v", err)
	}
	if err := r.Decode(s); err != nil {
		return sdk.Error(400, "%v", err)
	}
	if s.NextServer != "" {
		if _, err := netip.ParseAddr(s.NextServer); err != nil {
			return sdk.Error(422, "next_server: '%s' is not an IP address", s.NextServer)
		}
	}
	if s.BootFile == "" || strings.ContainsAny(s.BootFile, ", \n") {
		return sdk.Error(422, "boot_file: '%s' must be a file name without commas or spaces", s.BootFile)
	}
	if s.BootFileEFI == "" || strings.ContainsAny(s.BootFileEFI, ", \n") {
		return sdk.Error(422, "boot_file_efi: '%s' must be a file name without commas or spaces", s.BootFileEFI)
	}
	if s.JoinToken != "" && !joinTokenRule.MatchString(s.JoinToken) {
		return sdk.Error(422, "join_token: not a join token (cbj_…, from crowbar join_tokens create)")
	}
	if s.LeaseSeconds < 60 || s.LeaseSeconds > 7*86400 {
		return sdk.Error(422, "lease_seconds: %d must be between 60 and 604800", s.LeaseSeconds)
	}
	if s.FilesURL != "" && !strings.HasPrefix(s.FilesURL, "http://") && !strings.HasPrefix(s.FilesURL, "https://") {
		return sdk.Error(422, "files_url: '%s' must be an http:// or https:// URL", s.FilesURL)
	}
	s.FilesURL = strings.TrimSuffix(s.FilesURL, "/")
	if s.ServerURL != "" {
		u, err := url.Parse(s.ServerURL)
		if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" || u.RawQuery != "" || u.Fragment != "" || u.User != nil {
			return sdk.Error(422, "server_url: '%s' must be an http:// or https:// URL of a host, without query or credentials", s.ServerURL)
		}
		s.ServerURL = strings.TrimSuffix(s.ServerURL, "/")
	}
	for i, k := range s.AccessKeys {
		if !keyRule.MatchString(k) {
			return sdk.Error(422, "access_keys: entry %d is not an SSH public key line (type, base64 key, optional comment without quotes)", i)
		}
	}
	if s.AccessKeys == nil {
		s.AccessKeys = []string{}
	}
	b, _ := json.Marshal(s)
	if _, ok, err := sdk.KVCompareAndSwap("settings", b, rev); err != nil {
		return sdk.Error(500, "provisioner: %v", err)
	} else if !ok {
		return sdk.Error(409, "the settings changed while this request was handled; retry")
	}
	return sdk.JSON(200, redact(r, s))
}

func listBootenvs(*sdk.Request) *sdk.Response { return sdk.JSON(200, sortedBootenvs()) }

func showBootenv(r *sdk.Request) *sdk.Response {
	b, ok := bootenvs[r.Param("name")]
	if !ok {
		return sdk.Error(404, "bootenv '%s' not found", r.Param("name"))
	}
	return sdk.JSON(200, b)
}

// install is what the install hook leaves for the callback.
type install struct {
	Token      string `json:"token"`
	NodeRoleID int64  `json:"node_role_id"`
	Bootenv    string `json:"bootenv"`
}

func installKey(node int64) string { return "install/" + itoa(node) }

func loadInstall(node int64) (*install, int64, error) {
	v, rev, found, err := sdk.KVGet(installKey(node))
	if err != nil || !found {
		return nil, 0, err
	}
	var in install
	return &in, rev, json.Unmarshal(v, &in)
}

func newToken() (string, error) {
	var b [24]byte
	if _, err := rand.Read(b[:]); err != nil {
		return "", err
	}
	return hex.EncodeToString(b[:]), nil
}

// installTodo starts an install: a fresh token, the node's bootenv set to
// the installer; the node-role waits in TRANSITION for the callback.
func installTodo(e *sdk.Event) *sdk.Result {
	node, err := e.NodeInfo()
	if err != nil {
		return sdk.Failed("%v", err)
	}
	nr, err := e.NodeRoleInfo()
	if err != nil {
		return sdk.Failed("%v", err)
	}
	os := defaultOS
	if _, err := e.Attrib("crowbar/target_os", &os); err != nil {
		return sdk.Failed("reading provisioner-target_os: %v", err)
	}
	env, ok := bootenvs[os+"-install"]
	if !ok {
		return sdk.Failed("no boot environment installs '%s'", os)
	}
	token, err := newToken()
	if err != nil {
		return sdk.Failed("cannot make an install token: %v", err)
	}
	b, _ := json.Marshal(install{Token: token, NodeRoleID: nr.ID, Bootenv: env.Name})
	_, rev, _, err := sdk.KVGet(installKey(node.ID))
	if err != nil {
		return sdk.Failed("provisioner store: %v", err)
	}
	if _, ok, err := sdk.KVCompareAndSwap(installKey(node.ID), b, rev); err != nil || !ok {
		return sdk.Failed("cannot record the install of %s (%v); retry", node.Name, err)
	}
	if err := sdk.APIJSON("PUT", "/api/v2/nodes/"+itoa(node.ID), map[string]any{"bootenv": env.Name}, nil); err != nil {
		return sdk.Failed("cannot set the bootenv of %s to %s: %v", node.Name, env.Name, err)
	}
	sdk.Log(sdk.LevelInfo, "install started", "node", node.Name, "os", os)
	return sdk.Transition(fmt.Sprintf("installing %s on %s: bootenv %s; waiting for the installed system to call back", os, node.Name, env.Name))
}

// requestToken is the token a machine presents.
func requestToken(r *sdk.Request) string {
	if t := r.Header("X-Provisioner-Token"); t != "" {
		return t
	}
	return r.QueryValue("token")
}

// nodeID reads the route's numeric node id.
func nodeID(r *sdk.Request) (int64, *sdk.Response) {
	id, err := strconv.ParseInt(r.Param("id"), 10, 64)
	if err != nil || id <= 0 {
		return 0, sdk.Error(400, "'%s' is not a node id", r.Param("id"))
	}
	return id, nil
}

// authorize checks the token of node id's install; the answer is the same
// for an unknown node and a wrong token, so it tells an attacker nothing.
func authorize(r *sdk.Request, id int64) (*install, int64, *sdk.Response) {
	in, rev, err := loadInstall(id)
	if err != nil {
		return nil, 0, sdk.Error(500, "provisioner store: %v", err)
	}
	tok := requestToken(r)
	if in == nil || tok == "" || subtle.ConstantTimeCompare([]byte(tok), []byte(in.Token)) != 1 {
		return nil, 0, sdk.Error(401, "no install is under way for node %d with this token (X-Provisioner-Token header or token query parameter)", id)
	}
	return in, rev, nil
}

// installed is the installed system's callback: the node boots locally
// from now on and its install node-role is done.
func installed(r *sdk.Request) *sdk.Response {
	id, fail := nodeID(r)
	if fail != nil {
		return fail
	}
	in, rev, fail := authorize(r, id)
	if fail != nil {
		return fail
	}
	var report struct {
		Failed bool   `json:"failed"`
		Log    string `json:"log"`
	}
	if len(r.Body) > 0 {
		if err := r.Decode(&report); err != nil {
			return sdk.Error(400, "%v", err)
		}
	}
	state, runlog, bootenv := 0, "installed: the node called back; it boots from its disk", "local"
	if report.Failed {
		state, runlog, bootenv = -1, "the installer reported a failure: "+report.Log, in.Bootenv
	}
	if bootenv == "local" {
		if err := sdk.APIJSON("PUT", "/api/v2/nodes/"+itoa(id), map[string]any{"bootenv": "local"}, nil); err != nil {
			return sdk.Error(502, "cannot set the node's bootenv to local: %v", err)
		}
	}
	body := map[string]any{"state": state, "runlog": runlog}
	if err := sdk.APIJSON("PUT", "/api/v2/node_roles/"+itoa(in.NodeRoleID), body, nil); err != nil {
		var api *sdk.APIError
		if errors.As(err, &api) {
			return sdk.Error(api.Status, "cannot complete the install node-role: %s", api.Message)
		}
		return sdk.Error(502, "cannot complete the install node-role: %v", err)
	}
	sdk.KVDelete(installKey(id), rev) //nolint:errcheck // spent: a second callback is refused either way
	return sdk.JSON(200, map[string]any{"node_id": id, "bootenv": bootenv, "state": state})
}

// nodeDeleted forgets the node's install.
func nodeDeleted(e *sdk.Event) *sdk.Result {
	node, err := e.NodeInfo()
	if err != nil {
		return sdk.Failed("%v", err)
	}
	if _, err := sdk.KVDelete(installKey(node.ID), 0); err != nil {
		return sdk.Failed("%v", err)
	}
	return nil
}
