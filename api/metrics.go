package api

import (
	"context"
	"crypto/subtle"
	"errors"
	"net/http"
	"time"

	"github.com/crowbar-go/crowbar/core/auth"
	"github.com/crowbar-go/crowbar/core/metrics"
	"github.com/crowbar-go/crowbar/core/model"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// Metrics is the handler for --metrics-listen: crowbar's instruments, the
// annealer's queue, the database pool, the Go runtime and the process, in
// Prometheus' text format. Like every endpoint but the health checks it
// wants credentials: token (a scrape secret from --metrics-token-file, sent
// as a bearer token), or any crowbar user's.
func (s *Server) Metrics(token string) (http.Handler, error) {
	reg := prometheus.NewRegistry()
	reg.MustRegister(metrics.All()...)
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}), annealCollector{s})
	if db, err := s.store.DB.DB(); err == nil {
		reg.MustRegister(collectors.NewDBStatsCollector(db, "crowbar"))
	}
	serve := promhttp.HandlerFor(reg, promhttp.HandlerOpts{ErrorLog: s.log.StandardLogger(nil)})
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		header := r.Header.Get("Authorization")
		if token != "" && subtle.ConstantTimeCompare([]byte(header), []byte("Bearer "+token)) == 1 {
			serve.ServeHTTP(w, r)
			return
		}
		if _, err := s.signIn(r); err != nil {
			var th *auth.Throttled
			if errors.As(err, &th) {
				s.throttled(w, r, err)
			} else {
				s.authFailed(w, r, err)
			}
			return
		}
		serve.ServeHTTP(w, r)
	}), nil
}

var (
	nodeRolesDesc = prometheus.NewDesc("crowbar_node_roles", "Node-roles by state.", []string{"state"}, nil)
	runnableDesc  = prometheus.NewDesc("crowbar_anneal_runnable", "Node-roles the annealer could run now.", nil, nil)
	runningDesc   = prometheus.NewDesc("crowbar_anneal_running", "Node-roles this server is running now.", nil, nil)
)

// annealCollector reads the annealer's queue at scrape time (one
// consistent snapshot of the database).
type annealCollector struct{ s *Server }

func (c annealCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- nodeRolesDesc
	ch <- runnableDesc
	ch <- runningDesc
}

func (c annealCollector) Collect(ch chan<- prometheus.Metric) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	ch <- prometheus.MustNewConstMetric(runningDesc, prometheus.GaugeValue, float64(c.s.annealer.InFlight()))
	st, err := c.s.annealer.Status(ctx)
	if err != nil {
		ch <- prometheus.NewInvalidMetric(runnableDesc, err)
		return
	}
	ch <- prometheus.MustNewConstMetric(runnableDesc, prometheus.GaugeValue, float64(st.Runnable))
	for _, name := range model.StateNames {
		ch <- prometheus.MustNewConstMetric(nodeRolesDesc, prometheus.GaugeValue, float64(st.Counts[name]), name)
	}
}
