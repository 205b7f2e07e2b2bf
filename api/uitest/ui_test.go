package uitest

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/chromedp/chromedp"
	"github.com/crowbar-go/crowbar/api/apitest"
	"github.com/crowbar-go/crowbar/core/auth"
	"github.com/crowbar-go/crowbar/core/store"
	"github.com/crowbar-go/crowbar/core/store/storetest"
	"github.com/crowbar-go/crowbar/plugins"
	"github.com/crowbar-go/crowbar/plugins/pluginstest"
)

func newServer(t *testing.T, st *store.Store) *apitest.Server {
	return apitest.New(t, st, func(su *apitest.Setup) { su.Host = pluginstest.Host(t, st, plugins.Config{PoolSize: 2}) })
}

// TestWebUI walks an operator's day in a real browser: sign in, create a
// deployment, install a barclamp by upload and enable it, move nodes in,
// bind a role, commit and watch the cells turn ACTIVE in place, see an
// ERROR cell, read its run log and retry it; errors from the API (422
// with a field, 409) appear beside what caused them; a reader sees no write controls and a forged
// write is refused; signing out ends the session.
func TestWebUI(t *testing.T) {
	Chromium(t)
	wasm := pluginstest.Build(t, "plugins/testdata/graph")
	module := filepath.Join(t.TempDir(), "graph.wasm")
	if err := os.WriteFile(module, wasm, 0o644); err != nil {
		t.Fatal(err)
	}
	storetest.Each(t, func(t *testing.T, st *store.Store) {
		s := newServer(t, st)
		s.AddUser("rita", "rita-password", auth.RoleReader, true)
		for _, n := range []string{"n1.lab.test", "n2.lab.test", "n3.lab.test"} {
			s.Must(201, "POST", "/api/v2/nodes", `{"name": "`+n+`", "alive": true, "available": true}`)
		}
		// What exercises the UI rather than storage (screenshots, the
		// accessibility checks, user admin, the progress bar) runs once.
		full := t.Name() == "TestWebUI/sqlite"
		p := NewPage(t, Browser(t), s.URL)
		shot := func(name string) {
			if full {
				p.Shot(name)
				p.Accessible(name)
			}
		}

		p.Run("the sign-in page", chromedp.Navigate(p.url+"/"), chromedp.WaitVisible(chromedp.CSS(`#login`)))
		shot("sign-in")
		p.SignIn("admin", apitest.AdminPassword)
		if me := p.Text(); !strings.Contains(me, "Node-roles by state") {
			t.Fatalf("overview:\n%s", me)
		}

		// A deployment; a second one by the same name is a 409 shown by the form.
		p.GoTo("#/deployments", `document.querySelector('main').dataset.page === 'deployments' && document.getElementById('new-deployment')`)
		p.Submit(`#new-deployment`, map[string]string{"name": "lab", "description": "the test lab"})
		p.Run("deployment page", Until(`location.hash.startsWith('#/deployments/') && document.querySelector('main h1')?.innerText.includes('lab')`))
		depHash := Value[string](p, "read hash", `location.hash`)
		p.GoTo("#/deployments", `document.querySelector('main').dataset.page === 'deployments' && document.getElementById('new-deployment')`)
		shot("deployments")
		p.Submit(`#new-deployment`, map[string]string{"name": "lab"})
		p.Run("422 beside the name", Until(`document.querySelector('#new-deployment input[name=name][aria-invalid=true]') &&
			document.querySelector('#new-deployment .field-error')?.innerText.includes('already taken')`))

		// Install the barclamp by uploading its module.
		p.GoTo("#/barclamps", `document.querySelector('main').dataset.page === 'barclamps' && document.querySelector('main input[type=file]')`)
		p.Run("upload graph.wasm",
			chromedp.SetUploadFiles(chromedp.CSS(`main input[type=file]`), []string{module}),
			chromedp.Click(chromedp.CSS(`main form button[type=submit]`)),
			Until(`[...document.querySelectorAll('main td strong')].some(e => e.innerText === 'graph')`))
		shot("barclamps")

		// Enable it in the deployment; move two nodes in (one from the
		// deployment page, one from the node's page).
		p.GoTo(depHash, `document.querySelector('main h1')?.innerText.includes('lab') && document.querySelector('main select[name=barclamp]')`)
		p.Run("409 beside the button", chromedp.Click(`//button[text()="Propose"]`),
			Until(`document.querySelector('main .toolbar .error')?.innerText.startsWith('409: deployment \'lab\' is already proposed')`))
		p.Run("enable graph", chromedp.SetValue(chromedp.CSS(`main select[name=barclamp]`), "graph"),
			chromedp.Click(`//button[text()="Enable"]`),
			Until(`[...document.querySelectorAll('main td')].some(e => e.innerText === 'graph')`))
		p.Submit(`#move-node`, map[string]string{"node": "n1.lab.test"})
		p.Run("n1 moved", Until(`document.querySelector('main select[name=nodes]')?.innerText.includes('n1.lab.test')`))
		p.GoTo("#/nodes?search=n2", `document.getElementById('node-count')?.innerText.startsWith('1–1 of 1')`)
		p.Run("open n2", chromedp.Click(`//main//a[text()="n2.lab.test"]`),
			Until(`document.querySelector('main h1')?.innerText === 'Node n2.lab.test' && document.querySelector('main select[name=deployment_id]')`))
		nodeHash := Value[string](p, "n2's page", `location.hash`)
		labID := Value[string](p, "lab's id", `[...document.querySelectorAll('main select[name=deployment_id] option')].find(o => o.innerText === 'lab').value`)
		p.Run("move n2", chromedp.SetValue(chromedp.CSS(`main select[name=deployment_id]`), labID),
			chromedp.Click(`//button[text()="Move"]`),
			Until(`[...document.querySelectorAll('main dd a')].some(a => a.innerText === 'lab')`))
		shot("node")

		// Bind g-top (it brings g-mid and g-base) to both nodes; commit.
		p.GoTo("#/deployments/"+labID, `document.querySelector('main select[name=role]')`)
		p.Settle()
		p.Run("bind g-top", chromedp.SetValue(chromedp.CSS(`main select[name=role]`), "g-top"),
			JS(`for (const o of document.querySelector('main select[name=nodes]').options) o.selected = true`),
			chromedp.Click(`//button[text()="Bind"]`),
			Until(`document.querySelectorAll('#graph a.cell').length === 6`))
		p.Settle()
		p.Run("commit and watch", JS(`window.__cell = document.querySelector('#graph a.cell'); window.__marker = 1`),
			chromedp.Click(`//button[text()="Commit"]`),
			Until(`[...document.querySelectorAll('#graph a.cell')].every(a => a.innerText === 'active')`))
		if !Value[bool](p, "no reload", `window.__marker === 1 && window.__cell.isConnected && window.__cell.classList.contains('s-active')`) {
			t.Error("the cells turned ACTIVE by a reload, not in place")
		}
		shot("deployment")

		// g-flaky fails its first run: an ERROR cell, its run log, retry.
		p.Settle()
		p.Run("bind g-flaky", chromedp.SetValue(chromedp.CSS(`main select[name=role]`), "g-flaky"),
			JS(`for (const o of document.querySelector('main select[name=nodes]').options) o.selected = o.innerText === 'n1.lab.test'`),
			chromedp.Click(`//button[text()="Bind"]`),
			Until(`document.querySelectorAll('#graph a.cell').length === 7`),
			chromedp.Click(`//button[text()="Commit"]`),
			Until(`document.querySelector('#graph a.cell.s-error')`))
		p.Run("open the error", chromedp.Click(chromedp.CSS(`#graph a.cell.s-error`)),
			Until(`document.getElementById('runlog')?.innerText.includes('first run fails on purpose')`))
		shot("node-role")
		p.Run("retry", chromedp.Click(`//button[text()="Retry"]`),
			Until(`document.getElementById('nr-state')?.innerText === 'active' && document.getElementById('runlog').innerText.includes('second run works')`))

		// A 422 with a field is shown beside that field.
		p.GoTo("#/nodes", `document.querySelector('main').dataset.page === 'nodes' && document.getElementById('new-node')`)
		p.Submit(`#new-node`, map[string]string{"name": "localhost"})
		p.Run("422 beside the field", Until(`document.querySelector('main input[name=name][aria-invalid=true]') && document.querySelector('main .field-error')?.innerText.includes('fully qualified')`))
		shot("nodes")
		p.GoTo("#/", `document.querySelector('main').dataset.page === 'overview'`)
		shot("overview")
		if full {
			p.GoTo("#/users", `document.querySelector('main').dataset.page === 'users'`)
			// Admins manage users and join tokens here.
			p.Submit(`#new-user`, map[string]string{"username": "olga", "password": "olga-password", "role": "operator"})
			p.Run("user created", Until(`[...document.querySelectorAll('main td')].some(td => td.innerText === 'olga')`))
			p.Submit(`#new-join-token`, map[string]string{"description": "rack 7", "ttl": "2h"})
			p.Run("join token shown once", Until(`document.querySelector('#secret .secret')?.innerText.startsWith('cbj_')`))
			p.Run("revoke it", Until(`[...document.querySelectorAll('main td')].some(td => td.innerText === 'rack 7')`),
				chromedp.Click(`//tr[td[text()="rack 7"]]//button[text()="Revoke"]`),
				Until(`[...document.querySelectorAll('main tr')].some(tr => tr.innerText.includes('rack 7') && tr.innerText.includes('revoked'))`))
			shot("users")

			// A converge in progress shows in the header: g-wait's hook leaves
			// its node-roles waiting for a callback (as an OS install does)
			// until the test completes them, so the bar is there to be seen.
			p.GoTo("#/", `document.querySelector('main').dataset.page === 'overview'`)
			var waiting []string
			for _, n := range []string{"n1.lab.test", "n2.lab.test"} {
				id := s.Must(201, "POST", "/api/v2/node_roles", `{"node": "`+n+`", "role": "g-wait", "deployment": "lab"}`).Object(t)["id"]
				waiting = append(waiting, fmt.Sprint(id))
			}
			s.Must(200, "PUT", "/api/v2/deployments/lab/commit", "")
			p.Run("progress shown", Until(`document.querySelector('#anneal progress') &&
				/\d+ \/ \d+ done .* 2 waiting for a callback/.test(document.getElementById('anneal').innerText)`))
			progress := Value[string](p, "progress", `document.getElementById('anneal').innerText`)
			for _, id := range waiting {
				s.Must(200, "PUT", "/api/v2/node_roles/"+id, `{"state": 0, "runlog": "called back"}`)
			}
			p.Run("converged", Until(`document.getElementById('anneal').innerText.startsWith('Annealer idle')`))
			t.Logf("the header during the converge: %q", progress)
		}

		// A write without the CSRF token is refused even with the cookie.
		if forged := Value[int](p, "forged write", `fetch('/api/v2/nodes', {method: 'POST', headers: {'Content-Type': 'application/json'},
			body: JSON.stringify({name: 'forged.lab.test'})}).then(r => r.status)`); forged != 403 {
			t.Errorf("a write with the cookie but no CSRF token answered %d, want 403", forged)
		}

		// The reader: no write controls anywhere, and writes refused anyway.
		r := NewPage(t, Incognito(t, p.ctx), s.URL)
		r.SignIn("rita", "rita-password")
		for hash, ready := range map[string]string{
			"#/deployments/" + labID: `document.getElementById('graph')`,
			"#/nodes":                `document.getElementById('node-count')`,
			"#/barclamps":            `document.querySelector('main').dataset.page === 'barclamps'`,
			nodeHash:                 `document.querySelector('main dl')`,
		} {
			r.GoTo(hash, ready)
			writes := Value[string](r, "write controls", `[...document.querySelectorAll('main button, main form, main input, main select')].filter(e => !e.closest('form[role=search]'))
				.map(e => e.outerHTML.slice(0, 80)).join('\n')`)
			if writes != "" {
				t.Errorf("a reader sees write controls on %s:\n%s", hash, writes)
			}
		}
		if users := Value[string](r, "menu", `document.querySelector('nav').innerText`); strings.Contains(users, "Users") {
			t.Errorf("a reader's menu offers Users: %q", users)
		}
		if status := Value[string](r, "reader's write", `fetch('/api/v2/session').then(r => r.json()).then(s => fetch('/api/v2/nodes/n3.lab.test',
			{method: 'PUT', headers: {'Content-Type': 'application/json', 'X-CSRF-Token': s.csrf_token}, body: '{"description": "x"}'}))
			.then(r => r.status + ' ' + r.statusText)`); !strings.HasPrefix(status, "403") {
			t.Errorf("a reader's write with a good CSRF token answered %s, want 403", status)
		}

		p.ErrorsFree()
		r.ErrorsFree()

		// Sign out: back to the form, and the old cookie no longer works.
		p.Run("sign out", chromedp.Click(chromedp.CSS(`#signout`)), chromedp.WaitVisible(chromedp.CSS(`#login`)))
		if after := Value[int](p, "after sign-out", `fetch('/api/v2/nodes', {headers: {'X-Crowbar-Client': 'ui'}}).then(r => r.status)`); after != 401 {
			t.Errorf("after sign-out the browser's requests answered %d, want 401", after)
		}
	})
}
