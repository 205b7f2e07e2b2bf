// Package metrics holds crowbar's Prometheus metrics. The instruments are
// package-level so every layer can count without plumbing; a server
// gathers them, with its own collectors (the annealer's queue, the
// database pool), into the registry it serves on --metrics-listen.
package metrics

import (
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

var (
	// HTTPRequests counts answered requests by route template, method and
	// status.
	HTTPRequests = prometheus.NewCounterVec(prometheus.CounterOpts{Name: "crowbar_http_requests_total",
		Help: "HTTP requests answered, by route template, method and status."}, []string{"route", "method", "status"})
	// HTTPDuration is how long requests took, by route template and method.
	HTTPDuration = prometheus.NewHistogramVec(prometheus.HistogramOpts{Name: "crowbar_http_request_duration_seconds",
		Help:    "Time to answer HTTP requests, by route template and method.",
		Buckets: prometheus.ExponentialBuckets(0.0005, 2, 16)}, []string{"route", "method"})

	// AnnealTransitions counts node-role runs by how they ended: active,
	// error, transition (waiting for a callback) or requeued (the server
	// stopped under them).
	AnnealTransitions = prometheus.NewCounterVec(prometheus.CounterOpts{Name: "crowbar_anneal_transitions_total",
		Help: "Node-role runs finished, by result: active, error, transition, requeued."}, []string{"result"})
	// AnnealClaimSeconds is how long claiming a batch of work took.
	AnnealClaimSeconds = prometheus.NewHistogram(prometheus.HistogramOpts{Name: "crowbar_anneal_claim_seconds",
		Help: "Time to claim a batch of runnable node-roles.", Buckets: prometheus.ExponentialBuckets(0.0005, 2, 14)})
	// AnnealLeaseExpiries counts node-roles returned to todo because the
	// server running them stopped renewing their lease.
	AnnealLeaseExpiries = prometheus.NewCounter(prometheus.CounterOpts{Name: "crowbar_anneal_lease_expiries_total",
		Help: "Node-roles whose lease expired (their server died) and went back to todo."})

	// WasmCalls counts calls into barclamps by barclamp, export (http,
	// hook) and result (ok, error, timeout, exit).
	WasmCalls = prometheus.NewCounterVec(prometheus.CounterOpts{Name: "crowbar_wasm_calls_total",
		Help: "Calls into barclamp modules, by barclamp, export and result."}, []string{"barclamp", "export", "result"})
	// WasmCallSeconds is how long calls into barclamps took.
	WasmCallSeconds = prometheus.NewHistogramVec(prometheus.HistogramOpts{Name: "crowbar_wasm_call_seconds",
		Help: "Time of calls into barclamp modules, by barclamp and export.", Buckets: prometheus.ExponentialBuckets(0.00005, 2, 18)},
		[]string{"barclamp", "export"})
	// WasmTraps counts calls that trapped or exited (the instance is
	// discarded).
	WasmTraps = prometheus.NewCounterVec(prometheus.CounterOpts{Name: "crowbar_wasm_traps_total",
		Help: "Calls into barclamp modules that trapped, exited or ran out of time (the instance is discarded)."}, []string{"barclamp"})
	// WasmInstances is how many instances of each barclamp are alive.
	WasmInstances = prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "crowbar_wasm_instances",
		Help: "Live instances of each barclamp module."}, []string{"barclamp"})

	// NodeRoundTrips counts round trips to nodes' agents by node and
	// result (ok, error).
	NodeRoundTrips = prometheus.NewCounterVec(prometheus.CounterOpts{Name: "crowbar_node_round_trips_total",
		Help: "Round trips to nodes' agents (core0 protocol), by node and result."}, []string{"node", "result"})
	// NodeRoundTripSeconds is how long round trips to agents took.
	NodeRoundTripSeconds = prometheus.NewHistogram(prometheus.HistogramOpts{Name: "crowbar_node_round_trip_seconds",
		Help: "Time of round trips to nodes' agents (a blocking wait for a job counts as one).", Buckets: prometheus.ExponentialBuckets(0.0001, 2, 18)})
)

// All are the package's instruments, for a registry.
func All() []prometheus.Collector {
	return []prometheus.Collector{HTTPRequests, HTTPDuration, AnnealTransitions, AnnealClaimSeconds, AnnealLeaseExpiries,
		WasmCalls, WasmCallSeconds, WasmTraps, WasmInstances, NodeRoundTrips, NodeRoundTripSeconds}
}

// Since observes the time since start on h.
func Since(h prometheus.Observer, start time.Time) { h.Observe(time.Since(start).Seconds()) }
