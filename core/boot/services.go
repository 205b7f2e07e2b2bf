package boot

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"path/filepath"
	"time"

	"github.com/hashicorp/go-hclog"
)

// Config chooses the boot services to run; each is off when its field is
// empty.
type Config struct {
	// Interface is the admin network's interface: DHCP answers there,
	// and TFTP and files listen on its address unless told otherwise.
	Interface string
	// DHCP is "full", "proxy" or "off" (default full when Interface is set).
	DHCP string
	Plan PlanFunc
	// DataDir keeps the DHCP lease file.
	DataDir string
	// TFTPRoot holds the iPXE binaries; TFTPListen is host:port
	// (default the interface's address, port 69).
	TFTPRoot   string
	TFTPListen string
	// FilesDir holds kernels and initrds, served over HTTP on FilesListen
	// (default the interface's address, else all addresses, port 8091).
	FilesDir    string
	FilesListen string
	Logger      hclog.Logger
}

// Services are the running boot services.
type Services struct {
	DHCP      *DHCP
	TFTPAddr  net.Addr
	FilesAddr net.Addr

	log   hclog.Logger
	tftp  *TFTP
	files *http.Server
	errs  chan error
}

// Start starts what cfg asks for; the error says which service could not
// start and why (a port taken, an interface missing, no root privileges).
func Start(cfg Config) (*Services, error) {
	log := cfg.Logger
	if log == nil {
		log = hclog.NewNullLogger()
	}
	s := &Services{log: log, errs: make(chan error, 3)}
	var host string
	if cfg.Interface != "" {
		a, err := interfaceAddr(cfg.Interface)
		if err != nil {
			return nil, fmt.Errorf("--boot-interface %s: %w", cfg.Interface, err)
		}
		host = a.String()
	}
	ok := false
	defer func() {
		if !ok {
			s.Close()
		}
	}()
	if cfg.FilesDir != "" {
		addr := cfg.FilesListen
		if addr == "" {
			addr = net.JoinHostPort(host, "8091")
		}
		ln, err := net.Listen("tcp", addr)
		if err != nil {
			return nil, fmt.Errorf("boot files on %s: %w", addr, err)
		}
		s.FilesAddr = ln.Addr()
		s.files = &http.Server{Handler: Files(cfg.FilesDir, log.Named("files")), ReadHeaderTimeout: 10 * time.Second}
		go func() {
			if err := s.files.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
				s.errs <- fmt.Errorf("boot files: %w", err)
			}
		}()
		log.Info("serving boot files", "dir", cfg.FilesDir, "address", s.FilesAddr.String())
	}
	if cfg.TFTPRoot != "" {
		addr := cfg.TFTPListen
		if addr == "" {
			addr = net.JoinHostPort(host, "69")
		}
		t, err := NewTFTP(cfg.TFTPRoot, log.Named("tftp"))
		if err != nil {
			return nil, err
		}
		conn, err := net.ListenPacket("udp4", addr)
		if err != nil {
			return nil, fmt.Errorf("TFTP on %s: %w", addr, err)
		}
		s.tftp, s.TFTPAddr = t, conn.LocalAddr()
		go func() {
			if err := t.Serve(conn); err != nil {
				s.errs <- fmt.Errorf("TFTP: %w", err)
			}
		}()
		log.Info("serving TFTP", "root", cfg.TFTPRoot, "address", s.TFTPAddr.String())
	}
	if cfg.Interface != "" && cfg.DHCP != "off" {
		if cfg.DHCP != "" && cfg.DHCP != "full" && cfg.DHCP != "proxy" {
			return nil, fmt.Errorf("--dhcp %q: want full, proxy or off", cfg.DHCP)
		}
		leases := ""
		if cfg.DataDir != "" {
			leases = filepath.Join(cfg.DataDir, "dhcp-leases.json")
		}
		d, err := NewDHCP(DHCPConfig{Interface: cfg.Interface, Proxy: cfg.DHCP == "proxy", Plan: cfg.Plan,
			LeaseFile: leases, Logger: log.Named("dhcp")})
		if err != nil {
			return nil, err
		}
		if err := d.Listen(); err != nil {
			return nil, err
		}
		s.DHCP = d
		go func() {
			if err := d.Serve(); err != nil {
				s.errs <- err
			}
		}()
	}
	ok = true
	return s, nil
}

// Err reports a service that stopped on its own.
func (s *Services) Err() <-chan error { return s.errs }

// Close stops every service.
func (s *Services) Close() {
	if s.DHCP != nil {
		s.DHCP.Close() //nolint:errcheck
	}
	if s.tftp != nil {
		s.tftp.Close()
	}
	if s.files != nil {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		s.files.Shutdown(ctx) //nolint:errcheck
	}
}
