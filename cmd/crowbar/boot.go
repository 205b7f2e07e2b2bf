//go:build !agentonly

package main

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"os"
	"strings"
	"time"

	"github.com/crowbar-go/crowbar/api"
	"github.com/crowbar-go/crowbar/core/boot"
	"github.com/hashicorp/go-hclog"
)

// planPath is the provisioner's description of the admin network's DHCP.
const planPath = "/provisioner/v2/dhcp/config"

// startBoot starts the boot services the flags ask for (none: nil).
func startBoot(o *serverOptions, apiSrv *api.Server, log hclog.Logger) (*boot.Services, error) {
	tftpRoot := o.tftpRoot
	switch {
	case tftpRoot == "off":
		tftpRoot = ""
	case tftpRoot == "" && o.bootInterface != "":
		if tftpRoot = boot.DefaultTFTPRoot(); tftpRoot == "" {
			log.Warn("no iPXE binaries for TFTP: PXE ROMs cannot chain-load iPXE (install Debian's ipxe package or set --tftp-root); iPXE clients still boot",
				"looked_in", strings.Join(boot.IPXEDirs, ", "))
		}
	}
	if o.bootInterface == "" && tftpRoot == "" && o.filesDir == "" {
		return nil, nil
	}
	return boot.Start(boot.Config{Interface: o.bootInterface, DHCP: o.dhcpMode, DataDir: o.dataDir,
		TFTPRoot: tftpRoot, TFTPListen: o.tftpListen, FilesDir: o.filesDir, FilesListen: o.filesListen,
		Logger: log.Named("boot"), Plan: provisionerPlan(apiSrv)})
}

// provisionerPlan reads the DHCP plan from the provisioner barclamp, as
// an in-process API call: what the network and provisioner barclamps
// hold now, so a change is served without a restart.
func provisionerPlan(apiSrv *api.Server) boot.PlanFunc {
	return func(ctx context.Context) (*boot.Plan, error) {
		status, body, err := apiSrv.Call(ctx, "boot-services", "GET", planPath, nil)
		if err != nil {
			return nil, err
		}
		if status != 200 {
			var e struct {
				Message string `json:"message"`
			}
			json.Unmarshal(body, &e) //nolint:errcheck // the status says enough without it
			return nil, fmt.Errorf("GET %s: %d %s", planPath, status, e.Message)
		}
		var p boot.Plan
		if err := json.Unmarshal(body, &p); err != nil {
			return nil, fmt.Errorf("GET %s: %w", planPath, err)
		}
		return &p, nil
	}
}

// serveMetrics serves /metrics on --metrics-listen until stop is called.
func serveMetrics(o *serverOptions, apiSrv *api.Server, log hclog.Logger) (stop func(), err error) {
	token := ""
	if o.metricsTokenFile != "" {
		b, err := os.ReadFile(o.metricsTokenFile)
		if err != nil {
			return nil, fmt.Errorf("--metrics-token-file: %w", err)
		}
		if token = strings.TrimSpace(string(b)); len(token) < 16 {
			return nil, usageError{fmt.Errorf("--metrics-token-file: the secret must be at least 16 characters")}
		}
	}
	h, err := apiSrv.Metrics(token)
	if err != nil {
		return nil, err
	}
	ln, err := net.Listen("tcp", o.metricsListen)
	if err != nil {
		return nil, fmt.Errorf("--metrics-listen %s: %w", o.metricsListen, err)
	}
	mux := http.NewServeMux()
	mux.Handle("/metrics", h)
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	go srv.Serve(ln) //nolint:errcheck // ends with Close
	log.Info("serving metrics", "address", ln.Addr().String()+"/metrics")
	return func() { srv.Close() }, nil //nolint:errcheck
}
