package nodetest

import (
	"fmt"
	"strings"
	"testing"

	"github.com/crowbar-go/crowbar/api/apitest"
	"github.com/crowbar-go/crowbar/api/uitest"
	"github.com/crowbar-go/crowbar/core/agent"
	"github.com/crowbar-go/crowbar/core/core0"
	"github.com/crowbar-go/crowbar/core/store"
	"github.com/crowbar-go/crowbar/core/store/storetest"
)

// TestZeroOSInTheWebUI: with the zero-os barclamp installed, a node with
// an agent shows its containers, jobs and processes on its page in a real
// browser; with the agent stopped, that section says why (502 naming the
// node) and the rest of the page is still there.
func TestZeroOSInTheWebUI(t *testing.T) {
	uitest.Chromium(t)
	storetest.Each(t, func(t *testing.T, st *store.Store) {
		s := zeroOSServer(t, st)
		ag := s.StartAgent(func(c *agent.Config) { c.MAC = "52:54:00:12:34:57" })
		c := s.AgentClient(ag)
		t.Cleanup(func() { terminateContainers(c) })
		base := "/zero-os/v2/nodes/525400123457/containers"
		s.Must(204, "POST", base, fmt.Sprintf(`{"id": "web_c1", "hostname": "web-c1", "flist": %q, "nics": [{"type": "default"}]}`, busyboxRoot(t)))
		job, err := c.Push(ctx(t), core0.Command{Command: "core.system", Arguments: mustJSON(core0.SystemArgs{Name: "sleep", Args: []string{"78"}})})
		if err != nil {
			t.Fatal(err)
		}
		var nodeID any
		for _, n := range s.Must(200, "GET", "/api/v2/nodes", "").List(t) {
			if strings.Contains(fmt.Sprint(n["discovery"]), "525400123457") {
				nodeID = n["id"]
			}
		}
		if nodeID == nil {
			t.Fatal("the agent's node is not listed")
		}

		p := uitest.NewPage(t, uitest.Browser(t), s.URL)
		p.SignIn("admin", apitest.AdminPassword)
		p.GoTo(fmt.Sprintf("#/nodes/%v", nodeID), `document.getElementById('h-zos')`)
		p.Run("the node's Zero-OS side", uitest.Until(`(() => { const t = document.querySelector('section[aria-labelledby=h-zos]').innerText;
			return t.includes('web_c1') && t.includes('running') && t.includes(`+fmt.Sprintf("%q", job)+`) && t.includes('sleep 78'); })()`))
		p.ErrorsFree()

		if err := ag.Stop(); err != nil {
			t.Fatal(err)
		}
		p.GoTo("#/nodes", `document.getElementById('node-count')`)
		p.GoTo(fmt.Sprintf("#/nodes/%v", nodeID), `document.getElementById('h-zos')`)
		text := p.Text()
		if !strings.Contains(text, "502") || !strings.Contains(text, "Discovery data") {
			t.Errorf("with the agent stopped the node's page shows:\n%s", text)
		}
	})
}
