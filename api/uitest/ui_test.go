// Package uitest drives the web UI in a real headless Chromium (Debian's
// chromium, through chromedp) against a real server on SQLite and
// PostgreSQL. CROWBAR_UI_SCREENSHOTS=dir writes the pages' screenshots
// there (make ui-screenshots refreshes docs/ui/).
package uitest

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/cdproto/cdp"
	cdppage "github.com/chromedp/cdproto/page"
	"github.com/chromedp/chromedp"
	"github.com/crowbar-go/crowbar/api/apitest"
	"github.com/crowbar-go/crowbar/core/auth"
	"github.com/crowbar-go/crowbar/core/model"
	"github.com/crowbar-go/crowbar/core/store"
	"github.com/crowbar-go/crowbar/core/store/storetest"
	"github.com/crowbar-go/crowbar/plugins"
	"github.com/crowbar-go/crowbar/plugins/pluginstest"
)

// chromium finds the browser; without it the tests skip, except in CI
// where make test-tools installs it.
func chromium(t testing.TB) string {
	t.Helper()
	for _, name := range []string{"chromium", "chromium-browser", "google-chrome"} {
		if p, err := exec.LookPath(name); err == nil {
			return p
		}
	}
	if os.Getenv("CI") != "" {
		t.Fatal("chromium is not installed (make test-tools installs Debian's chromium)")
	}
	t.Skip("chromium is not installed: make test-tools installs it; skipping the browser tests")
	return ""
}

// browser starts a headless Chromium for the test: its tabs share one
// profile; newTab opens another with a profile of its own.
func browser(t testing.TB) context.Context {
	t.Helper()
	opts := append(chromedp.DefaultExecAllocatorOptions[:],
		chromedp.ExecPath(chromium(t)),
		chromedp.NoSandbox, // CI runs as root
		chromedp.Flag("disable-dev-shm-usage", true),
		chromedp.WindowSize(1280, 900),
	)
	alloc, cancelAlloc := chromedp.NewExecAllocator(context.Background(), opts...)
	ctx, cancel := chromedp.NewContext(alloc)
	if err := chromedp.Do(ctx); err != nil {
		cancel()
		cancelAlloc()
		t.Fatalf("start chromium: %v", err)
	}
	t.Cleanup(func() { cancel(); cancelAlloc() })
	return ctx
}

// incognito is a tab in a browser context of its own (no shared cookies).
func incognito(t testing.TB, ctx context.Context) context.Context {
	t.Helper()
	c, cancel := chromedp.NewContext(ctx, chromedp.WithNewBrowserContext())
	if err := chromedp.Do(c); err != nil {
		cancel()
		t.Fatal(err)
	}
	t.Cleanup(cancel)
	return c
}

// newPage is a tab of ctx on the server at url that records the page's
// script errors (checked by errorsFree).
func newPage(t testing.TB, ctx context.Context, url string) *page {
	t.Helper()
	p := &page{t: t, ctx: ctx, url: url}
	p.run("watch for script errors", chromedp.Func(func(ctx context.Context, tg *chromedp.Target) error {
		_, err := cdp.Call(ctx, tg, cdppage.AddScriptToEvaluateOnNewDocument, cdppage.AddScriptToEvaluateOnNewDocumentParams{Source: `
			window.__errors = [];
			addEventListener('error', (e) => window.__errors.push(String(e.message || e)));
			addEventListener('unhandledrejection', (e) => window.__errors.push(String(e.reason)));`})
		return err
	}))
	return p
}

// errorsFree fails the test if the page threw.
func (p *page) errorsFree() {
	p.t.Helper()
	if errs := value[string](p, "script errors", `JSON.stringify(window.__errors || [])`); errs != "[]" {
		p.t.Errorf("the page's scripts failed: %s", errs)
	}
}

// page wraps a tab with steps that fail the test with what the page shows.
type page struct {
	t   testing.TB
	ctx context.Context
	url string
}

type step = chromedp.Action[chromedp.Void]

func (p *page) run(what string, steps ...step) {
	p.t.Helper()
	ctx, cancel := context.WithTimeout(p.ctx, 60*time.Second)
	defer cancel()
	if err := chromedp.Do(ctx, steps...); err != nil {
		c2, cancel2 := context.WithTimeout(p.ctx, 5*time.Second)
		defer cancel2()
		text, _ := chromedp.Run(c2, chromedp.Evaluate[string](`document.body.innerText + '\nscript errors: ' + JSON.stringify(window.__errors) + JSON.stringify((window.__evs||[]).slice(-8))`))
		p.t.Fatalf("%s: %v\nthe page shows:\n%s", what, err, text)
	}
}

// value evaluates JavaScript (awaiting a promise) in the page.
func value[T any](p *page, what, expr string) T {
	p.t.Helper()
	ctx, cancel := context.WithTimeout(p.ctx, 60*time.Second)
	defer cancel()
	v, err := chromedp.Run(ctx, chromedp.Evaluate[T](expr, chromedp.EvalAwaitPromise))
	if err != nil {
		p.t.Fatalf("%s: %v", what, err)
	}
	return v
}

// js runs a statement in the page.
func js(expr string) step {
	return chromedp.Func(func(ctx context.Context, t *chromedp.Target) error {
		_, err := chromedp.Evaluate[any](expr)(ctx, t)
		return err
	})
}

// until waits for a JavaScript expression to be truthy.
func until(expr string) step {
	return chromedp.Func(func(ctx context.Context, t *chromedp.Target) error {
		deadline := time.Now().Add(45 * time.Second)
		for {
			_, err := chromedp.Poll[any](expr, chromedp.WithPollingTimeout(time.Until(deadline)), chromedp.WithPollingInterval(50*time.Millisecond))(ctx, t)
			// A navigation replaces the page's JavaScript context under a
			// poll started just before it: poll the new one.
			if err != nil && time.Now().Before(deadline) && ctx.Err() == nil &&
				(strings.Contains(err.Error(), "Cannot find context") || strings.Contains(err.Error(), "context was destroyed")) {
				time.Sleep(20 * time.Millisecond)
				continue
			}
			if err != nil {
				return fmt.Errorf("waiting for %s: %w", expr, err)
			}
			return nil
		}
	})
}

// goTo navigates within the UI and waits for the page to be drawn.
func (p *page) goTo(hash, ready string) {
	p.t.Helper()
	p.run("open "+hash, js(`location.hash = `+jsString(hash)), until(ready))
}

func jsString(s string) string { return fmt.Sprintf("%q", s) }

// shot saves a screenshot of the page as name.png when
// CROWBAR_UI_SCREENSHOTS names a directory.
func (p *page) shot(name string) {
	p.t.Helper()
	dir := os.Getenv("CROWBAR_UI_SCREENSHOTS")
	if dir == "" {
		return
	}
	png, err := chromedp.Run(p.ctx, chromedp.FullScreenshot(100))
	if err != nil {
		p.t.Fatalf("screenshot %s: %v", name, err)
	}
	if err = os.WriteFile(filepath.Join(dir, name+".png"), png, 0o644); err != nil {
		p.t.Fatal(err)
	}
}

// axeSource is axe-core (the accessibility checker), from the file
// CROWBAR_AXE names (make test fetches it); "" skips the checks outside CI.
func axeSource(t testing.TB) string {
	t.Helper()
	path := os.Getenv("CROWBAR_AXE")
	if path == "" {
		if os.Getenv("CI") != "" {
			t.Fatal("CROWBAR_AXE is not set: run the tests with make test, which fetches axe-core")
		}
		t.Log("CROWBAR_AXE is not set (make test sets it): skipping the accessibility checks")
		return ""
	}
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("axe-core: %v (make test-tools fetches it)", err)
	}
	return string(b)
}

// accessible runs axe-core's WCAG 2.1 A and AA rules on the page as it is
// and fails the test on any violation.
func (p *page) accessible(name string) {
	p.t.Helper()
	src := axeSource(p.t)
	if src == "" {
		return
	}
	if !value[bool](p, "axe loaded", `!!window.axe`) {
		p.run("load axe-core", js(src))
	}
	out := value[string](p, "axe "+name, `axe.run(document, {runOnly: {type: 'tag', values: ['wcag2a', 'wcag2aa', 'wcag21a', 'wcag21aa']}})
		.then(r => JSON.stringify(r.violations.map(v => v.id + ' (' + v.impact + '): ' + v.help + ' at ' +
			v.nodes.slice(0, 3).map(n => n.target.join(' ') + ' ' + (n.failureSummary || '').replace(/\s+/g, ' ')).join(' | '))))`)
	if out != "[]" {
		p.t.Errorf("accessibility of %s (axe-core, WCAG 2.1 AA): %s", name, out)
	}
}

func (p *page) signIn(user, password string) {
	p.t.Helper()
	p.run("sign in as "+user,
		chromedp.Navigate(p.url+"/"),
		chromedp.WaitVisible(chromedp.CSS(`#login input[name=username]`)),
		chromedp.SendKeys(chromedp.CSS(`#login input[name=username]`), user),
		chromedp.SendKeys(chromedp.CSS(`#login input[name=password]`), password),
		chromedp.Click(chromedp.CSS(`#login button[type=submit]`)),
		until(`document.querySelector('main').dataset.page === 'overview'`))
}

// settle waits until the annealer is idle and the page has not been
// redrawn for half a second (live updates may redraw it until then).
func (p *page) settle() {
	p.t.Helper()
	p.run("settle", js(`window.__settle = [document.querySelector('main').dataset.ready, performance.now()]`),
		until(`(() => { const g = document.querySelector('main').dataset.ready;
			if (g !== window.__settle[0]) window.__settle = [g, performance.now()];
			return document.getElementById('anneal')?.innerText.startsWith('Annealer idle') && performance.now() - window.__settle[1] > 500; })()`))
}

// text is main's visible text.
func (p *page) text() string {
	return value[string](p, "read the page", `document.querySelector('main').innerText`)
}

// submit fills a form (found by a selector) and submits it.
func (p *page) submit(form string, fields map[string]string) {
	p.t.Helper()
	var steps []step
	for name, v := range fields {
		steps = append(steps, chromedp.SetValue(chromedp.CSS(form+` [name="`+name+`"]`), v))
	}
	steps = append(steps, chromedp.Click(chromedp.CSS(form+` button[type=submit]`)))
	p.run("submit "+form, steps...)
}

func mustInt(t testing.TB, s string) int64 {
	t.Helper()
	n, err := strconv.ParseInt(s, 10, 64)
	if err != nil {
		t.Fatal(err)
	}
	return n
}

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
	chromium(t)
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
		shots := t.Name() == "TestWebUI/sqlite"
		p := newPage(t, browser(t), s.URL)
		shot := func(name string) {
			if shots {
				p.shot(name)
				p.accessible(name)
			}
		}

		p.run("the sign-in page", chromedp.Navigate(p.url+"/"), chromedp.WaitVisible(chromedp.CSS(`#login`)))
		shot("sign-in")
		p.signIn("admin", apitest.AdminPassword)
		if me := p.text(); !strings.Contains(me, "Node-roles by state") {
			t.Fatalf("overview:\n%s", me)
		}

		// A deployment; a second one by the same name is a 409 shown by the form.
		p.goTo("#/deployments", `document.querySelector('main').dataset.page === 'deployments' && document.getElementById('new-deployment')`)
		p.submit(`#new-deployment`, map[string]string{"name": "lab", "description": "the test lab"})
		p.run("deployment page", until(`location.hash.startsWith('#/deployments/') && document.querySelector('main h1')?.innerText.includes('lab')`))
		depHash := value[string](p, "read hash", `location.hash`)
		p.goTo("#/deployments", `document.querySelector('main').dataset.page === 'deployments' && document.getElementById('new-deployment')`)
		shot("deployments")
		p.submit(`#new-deployment`, map[string]string{"name": "lab"})
		p.run("422 beside the name", until(`document.querySelector('#new-deployment input[name=name][aria-invalid=true]') &&
			document.querySelector('#new-deployment .field-error')?.innerText.includes('already taken')`))

		// Install the barclamp by uploading its module.
		p.goTo("#/barclamps", `document.querySelector('main').dataset.page === 'barclamps' && document.querySelector('main input[type=file]')`)
		p.run("upload graph.wasm",
			chromedp.SetUploadFiles(chromedp.CSS(`main input[type=file]`), []string{module}),
			chromedp.Click(chromedp.CSS(`main form button[type=submit]`)),
			until(`[...document.querySelectorAll('main td strong')].some(e => e.innerText === 'graph')`))
		shot("barclamps")

		// Enable it in the deployment; move two nodes in (one from the
		// deployment page, one from the node's page).
		p.goTo(depHash, `document.querySelector('main h1')?.innerText.includes('lab') && document.querySelector('main select[name=barclamp]')`)
		p.run("409 beside the button", chromedp.Click(`//button[text()="Propose"]`),
			until(`document.querySelector('main .toolbar .error')?.innerText.startsWith('409: deployment \'lab\' is already proposed')`))
		p.run("enable graph", chromedp.SetValue(chromedp.CSS(`main select[name=barclamp]`), "graph"),
			chromedp.Click(`//button[text()="Enable"]`),
			until(`[...document.querySelectorAll('main td')].some(e => e.innerText === 'graph')`))
		p.submit(`#move-node`, map[string]string{"node": "n1.lab.test"})
		p.run("n1 moved", until(`document.querySelector('main select[name=nodes]')?.innerText.includes('n1.lab.test')`))
		p.goTo("#/nodes?search=n2", `document.getElementById('node-count')?.innerText.startsWith('1–1 of 1')`)
		p.run("open n2", chromedp.Click(`//main//a[text()="n2.lab.test"]`),
			until(`document.querySelector('main h1')?.innerText === 'Node n2.lab.test' && document.querySelector('main select[name=deployment_id]')`))
		nodeHash := value[string](p, "n2's page", `location.hash`)
		labID := value[string](p, "lab's id", `[...document.querySelectorAll('main select[name=deployment_id] option')].find(o => o.innerText === 'lab').value`)
		p.run("move n2", chromedp.SetValue(chromedp.CSS(`main select[name=deployment_id]`), labID),
			chromedp.Click(`//button[text()="Move"]`),
			until(`[...document.querySelectorAll('main dd a')].some(a => a.innerText === 'lab')`))
		shot("node")

		// Bind g-top (it brings g-mid and g-base) to both nodes; commit.
		p.goTo("#/deployments/"+labID, `document.querySelector('main select[name=role]')`)
		p.settle()
		p.run("bind g-top", chromedp.SetValue(chromedp.CSS(`main select[name=role]`), "g-top"),
			js(`for (const o of document.querySelector('main select[name=nodes]').options) o.selected = true`),
			chromedp.Click(`//button[text()="Bind"]`),
			until(`document.querySelectorAll('#graph a.cell').length === 6`))
		p.settle()
		p.run("commit and watch", js(`window.__cell = document.querySelector('#graph a.cell'); window.__marker = 1`),
			chromedp.Click(`//button[text()="Commit"]`),
			until(`[...document.querySelectorAll('#graph a.cell')].every(a => a.innerText === 'active')`))
		if !value[bool](p, "no reload", `window.__marker === 1 && window.__cell.isConnected && window.__cell.classList.contains('s-active')`) {
			t.Error("the cells turned ACTIVE by a reload, not in place")
		}
		shot("deployment")

		// g-flaky fails its first run: an ERROR cell, its run log, retry.
		p.settle()
		p.run("bind g-flaky", chromedp.SetValue(chromedp.CSS(`main select[name=role]`), "g-flaky"),
			js(`for (const o of document.querySelector('main select[name=nodes]').options) o.selected = o.innerText === 'n1.lab.test'`),
			chromedp.Click(`//button[text()="Bind"]`),
			until(`document.querySelectorAll('#graph a.cell').length === 7`),
			chromedp.Click(`//button[text()="Commit"]`),
			until(`document.querySelector('#graph a.cell.s-error')`))
		p.run("open the error", chromedp.Click(chromedp.CSS(`#graph a.cell.s-error`)),
			until(`document.getElementById('runlog')?.innerText.includes('first run fails on purpose')`))
		shot("node-role")
		p.run("retry", chromedp.Click(`//button[text()="Retry"]`),
			until(`document.getElementById('nr-state')?.innerText === 'active' && document.getElementById('runlog').innerText.includes('second run works')`))

		// A 422 with a field is shown beside that field.
		p.goTo("#/nodes", `document.querySelector('main').dataset.page === 'nodes' && document.getElementById('new-node')`)
		p.submit(`#new-node`, map[string]string{"name": "localhost"})
		p.run("422 beside the field", until(`document.querySelector('main input[name=name][aria-invalid=true]') && document.querySelector('main .field-error')?.innerText.includes('fully qualified')`))
		shot("nodes")
		p.goTo("#/", `document.querySelector('main').dataset.page === 'overview'`)
		shot("overview")
		p.goTo("#/users", `document.querySelector('main').dataset.page === 'users'`)
		shot("users")

		// A bigger converge: the header shows its progress while it runs.
		p.goTo("#/", `document.querySelector('main').dataset.page === 'overview'`)
		big := make([]model.Node, 150)
		for i := range big {
			big[i] = model.Node{Name: fmt.Sprintf("big%03d.lab.test", i), DeploymentID: mustInt(t, labID), Alive: true, Available: true}
		}
		if err := st.DB.CreateInBatches(big, 200).Error; err != nil {
			t.Fatal(err)
		}
		for _, n := range big {
			s.Must(201, "POST", "/api/v2/node_roles", fmt.Sprintf(`{"node": %d, "role": "g-top", "deployment": "lab"}`, n.ID))
		}
		s.Must(200, "PUT", "/api/v2/deployments/lab/commit", "")
		p.run("progress shown", until(`document.querySelector('#anneal progress') && /\d+ \/ \d+ done/.test(document.getElementById('anneal').innerText)`))
		progress := value[string](p, "progress", `document.getElementById('anneal').innerText`)
		p.run("converged", until(`document.getElementById('anneal').innerText.startsWith('Annealer idle')`))
		t.Logf("the header during the converge: %q", progress)

		// A write without the CSRF token is refused even with the cookie.
		if forged := value[int](p, "forged write", `fetch('/api/v2/nodes', {method: 'POST', headers: {'Content-Type': 'application/json'},
			body: JSON.stringify({name: 'forged.lab.test'})}).then(r => r.status)`); forged != 403 {
			t.Errorf("a write with the cookie but no CSRF token answered %d, want 403", forged)
		}

		// The reader: no write controls anywhere, and writes refused anyway.
		r := newPage(t, incognito(t, p.ctx), s.URL)
		r.signIn("rita", "rita-password")
		for hash, ready := range map[string]string{
			"#/deployments/" + labID: `document.getElementById('graph')`,
			"#/nodes":                `document.getElementById('node-count')`,
			"#/barclamps":            `document.querySelector('main').dataset.page === 'barclamps'`,
			nodeHash:                 `document.querySelector('main dl')`,
		} {
			r.goTo(hash, ready)
			writes := value[string](r, "write controls", `[...document.querySelectorAll('main button, main form, main input, main select')].filter(e => !e.closest('form[role=search]'))
				.map(e => e.outerHTML.slice(0, 80)).join('\n')`)
			if writes != "" {
				t.Errorf("a reader sees write controls on %s:\n%s", hash, writes)
			}
		}
		if users := value[string](r, "menu", `document.querySelector('nav').innerText`); strings.Contains(users, "Users") {
			t.Errorf("a reader's menu offers Users: %q", users)
		}
		if status := value[string](r, "reader's write", `fetch('/api/v2/session').then(r => r.json()).then(s => fetch('/api/v2/nodes/n3.lab.test',
			{method: 'PUT', headers: {'Content-Type': 'application/json', 'X-CSRF-Token': s.csrf_token}, body: '{"description": "x"}'}))
			.then(r => r.status + ' ' + r.statusText)`); !strings.HasPrefix(status, "403") {
			t.Errorf("a reader's write with a good CSRF token answered %s, want 403", status)
		}

		p.errorsFree()
		r.errorsFree()

		// Sign out: back to the form, and the old cookie no longer works.
		p.run("sign out", chromedp.Click(chromedp.CSS(`#signout`)), chromedp.WaitVisible(chromedp.CSS(`#login`)))
		if after := value[int](p, "after sign-out", `fetch('/api/v2/nodes', {headers: {'X-Crowbar-Client': 'ui'}}).then(r => r.status)`); after != 401 {
			t.Errorf("after sign-out the browser's requests answered %d, want 401", after)
		}
	})
}
