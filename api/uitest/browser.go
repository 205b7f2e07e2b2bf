// Package uitest drives crowbar's web UI in a real headless Chromium
// (Debian's chromium, through chromedp): helpers for browser tests here and
// in other packages (api/nodetest checks a node's Zero-OS section).
// CROWBAR_UI_SCREENSHOTS=dir makes Shot write the pages' screenshots there
// (make ui-screenshots refreshes docs/ui/); CROWBAR_AXE names axe-core for
// Accessible (make test fetches it).
package uitest

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/cdproto/cdp"
	cdppage "github.com/chromedp/cdproto/page"
	"github.com/chromedp/chromedp"
)

// Chromium finds the browser; without it the tests skip, except in CI
// where make test-tools installs it.
func Chromium(t testing.TB) string {
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

// Browser starts a headless Chromium for the test: its tabs share one
// profile; Incognito opens another with a profile of its own.
func Browser(t testing.TB) context.Context {
	t.Helper()
	opts := append(chromedp.DefaultExecAllocatorOptions[:],
		chromedp.ExecPath(Chromium(t)),
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

// Incognito is a tab in a browser context of its own (no shared cookies).
func Incognito(t testing.TB, ctx context.Context) context.Context {
	t.Helper()
	c, cancel := chromedp.NewContext(ctx, chromedp.WithNewBrowserContext())
	if err := chromedp.Do(c); err != nil {
		cancel()
		t.Fatal(err)
	}
	t.Cleanup(cancel)
	return c
}

// NewPage is a tab of ctx on the server at url that records the page's
// script errors (checked by ErrorsFree).
func NewPage(t testing.TB, ctx context.Context, url string) *Page {
	t.Helper()
	p := &Page{t: t, ctx: ctx, url: url}
	p.Run("watch for script errors", chromedp.Func(func(ctx context.Context, tg *chromedp.Target) error {
		_, err := cdp.Call(ctx, tg, cdppage.AddScriptToEvaluateOnNewDocument, cdppage.AddScriptToEvaluateOnNewDocumentParams{Source: `
			window.__errors = [];
			addEventListener('error', (e) => window.__errors.push(String(e.message || e)));
			addEventListener('unhandledrejection', (e) => window.__errors.push(String(e.reason)));`})
		return err
	}))
	return p
}

// ErrorsFree fails the test if the page threw.
func (p *Page) ErrorsFree() {
	p.t.Helper()
	if errs := Value[string](p, "script errors", `JSON.stringify(window.__errors || [])`); errs != "[]" {
		p.t.Errorf("the page's scripts failed: %s", errs)
	}
}

// Page wraps a tab with steps that fail the test with what the page shows.
type Page struct {
	t   testing.TB
	ctx context.Context
	url string
}

// Step is one browser action.
type Step = chromedp.Action[chromedp.Void]

// Run runs steps, failing the test with what the page shows.
func (p *Page) Run(what string, steps ...Step) {
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

// Value evaluates JavaScript (awaiting a promise) in the page.
func Value[T any](p *Page, what, expr string) T {
	p.t.Helper()
	ctx, cancel := context.WithTimeout(p.ctx, 60*time.Second)
	defer cancel()
	v, err := chromedp.Run(ctx, chromedp.Evaluate[T](expr, chromedp.EvalAwaitPromise))
	if err != nil {
		p.t.Fatalf("%s: %v", what, err)
	}
	return v
}

// JS runs a statement in the page.
func JS(expr string) Step {
	return chromedp.Func(func(ctx context.Context, t *chromedp.Target) error {
		_, err := chromedp.Evaluate[any](expr)(ctx, t)
		return err
	})
}

// Until waits for a JavaScript expression to be truthy.
func Until(expr string) Step {
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

// GoTo navigates within the UI and waits for the page to be drawn.
func (p *Page) GoTo(hash, ready string) {
	p.t.Helper()
	p.Run("open "+hash, JS(`location.hash = `+jsString(hash)), Until(ready))
}

func jsString(s string) string { return fmt.Sprintf("%q", s) }

// Shot saves a screenshot of the page as name.png when
// CROWBAR_UI_SCREENSHOTS names a directory.
func (p *Page) Shot(name string) {
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

// Accessible runs axe-core's WCAG 2.1 A and AA rules on the page as it is
// and fails the test on any violation.
func (p *Page) Accessible(name string) {
	p.t.Helper()
	src := axeSource(p.t)
	if src == "" {
		return
	}
	if !Value[bool](p, "axe loaded", `!!window.axe`) {
		p.Run("load axe-core", JS(src))
	}
	out := Value[string](p, "axe "+name, `axe.run(document, {runOnly: {type: 'tag', values: ['wcag2a', 'wcag2aa', 'wcag21a', 'wcag21aa']}})
		.then(r => JSON.stringify(r.violations.map(v => v.id + ' (' + v.impact + '): ' + v.help + ' at ' +
			v.nodes.slice(0, 3).map(n => n.target.join(' ') + ' ' + (n.failureSummary || '').replace(/\s+/g, ' ')).join(' | '))))`)
	if out != "[]" {
		p.t.Errorf("accessibility of %s (axe-core, WCAG 2.1 AA): %s", name, out)
	}
}

// SignIn signs in through the form and waits for the overview.
func (p *Page) SignIn(user, password string) {
	p.t.Helper()
	p.Run("sign in as "+user,
		chromedp.Navigate(p.url+"/"),
		chromedp.WaitVisible(chromedp.CSS(`#login input[name=username]`)),
		chromedp.SendKeys(chromedp.CSS(`#login input[name=username]`), user),
		chromedp.SendKeys(chromedp.CSS(`#login input[name=password]`), password),
		chromedp.Click(chromedp.CSS(`#login button[type=submit]`)),
		Until(`document.querySelector('main').dataset.page === 'overview'`))
}

// Settle waits until the annealer is idle and the page has not been
// redrawn for half a second (live updates may redraw it until then).
func (p *Page) Settle() {
	p.t.Helper()
	p.Run("settle", JS(`window.__settle = [document.querySelector('main').dataset.ready, performance.now()]`),
		Until(`(() => { const g = document.querySelector('main').dataset.ready;
			if (g !== window.__settle[0]) window.__settle = [g, performance.now()];
			return document.getElementById('anneal')?.innerText.startsWith('Annealer idle') && performance.now() - window.__settle[1] > 500; })()`))
}

// Text is main's visible text.
func (p *Page) Text() string {
	return Value[string](p, "read the page", `document.querySelector('main').innerText`)
}

// Submit fills a form (found by a selector) and submits it.
func (p *Page) Submit(form string, fields map[string]string) {
	p.t.Helper()
	var steps []Step
	for name, v := range fields {
		steps = append(steps, chromedp.SetValue(chromedp.CSS(form+` [name="`+name+`"]`), v))
	}
	steps = append(steps, chromedp.Click(chromedp.CSS(form+` button[type=submit]`)))
	p.Run("submit "+form, steps...)
}
