package uitest

import (
	"fmt"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
	"github.com/crowbar-go/crowbar/api/apitest"
	"github.com/crowbar-go/crowbar/api/ui"
	"github.com/crowbar-go/crowbar/core/model"
	"github.com/crowbar-go/crowbar/core/store/storetest"
)

// TestAssetsSize keeps the embedded web UI small: the budget is
// 500 KB compressed (figures in docs/benchmarks.md).
func TestAssetsSize(t *testing.T) {
	raw, gz := ui.Size()
	t.Logf("web UI assets: %d bytes, %d gzipped", raw, gz)
	if gz > 500*1000 {
		t.Errorf("the web UI's files are %d bytes gzipped; the budget is 500 KB", gz)
	}
}

// BenchmarkFirstPaint times a fresh page load (the browser's cache warm,
// as for an operator who comes back) until the page's data is drawn, with
// 10,000 nodes stored: the overview, and the node list's first page.
func BenchmarkFirstPaint(b *testing.B) {
	for _, db := range storetest.Databases(b) {
		b.Run(string(db.Dialect), func(b *testing.B) { firstPaint(b, db.DSN) })
	}
	raw, gz := ui.Size()
	b.Logf("web UI assets: %d bytes, %d gzipped", raw, gz)
}

func firstPaint(b *testing.B, dsn string) {
	st := storetest.Open(b, dsn)
	nodes := make([]model.Node, 10000)
	for i := range nodes {
		nodes[i] = model.Node{Name: fmt.Sprintf("n%05d.bench.test", i), DeploymentID: model.SystemDeploymentID,
			Alive: i%3 != 0, Available: i%5 != 0, Bootenv: "local"}
	}
	if err := st.DB.CreateInBatches(nodes, 500).Error; err != nil {
		b.Fatal(err)
	}
	s := apitest.New(b, st)
	p := NewPage(b, Browser(b), s.URL)
	p.SignIn("admin", apitest.AdminPassword)
	for _, c := range []struct{ name, hash, ready string }{
		{"overview", "#/", `document.querySelector('main').dataset.page === 'overview' && document.querySelector('main .big')?.innerText === '10000'`},
		{"nodes", "#/nodes", `document.getElementById('node-count')?.innerText === '1–50 of 10000'`},
		{"nodes-page-100", "#/nodes?page=100", `document.getElementById('node-count')?.innerText === '5001–5050 of 10000'`},
		{"nodes-search", "#/nodes?search=n09&alive=true", `document.getElementById('node-count')?.innerText.endsWith('of 666')`},
	} {
		b.Run(c.name, func(b *testing.B) {
			var total, inPage time.Duration
			for b.Loop() {
				p.Run("blank", chromedp.Navigate("about:blank"))
				start := time.Now()
				p.Run("load "+c.hash, chromedp.Navigate(s.URL+"/"+c.hash), Until(c.ready))
				total += time.Since(start)
				// The page's own clock: navigation start to the data drawn.
				inPage += time.Duration(Value[float64](p, "paint time", `window.__painted || 0`) * float64(time.Millisecond))
			}
			b.ReportMetric(float64(total.Milliseconds())/float64(b.N), "ms/paint")
			b.ReportMetric(float64(inPage.Milliseconds())/float64(b.N), "ms/paint-in-page")
		})
	}
}
