package agent

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"net"
	"os"
	"time"

	"github.com/crowbar-go/crowbar/core/core0"
)

// loadOrCreateCert loads the given certificate, or the one in dir, or
// makes a self-signed one there (ECDSA P-256, ten years, the host's names
// and addresses): the server pins its fingerprint at join, so validity
// dates and names matter less than the key staying put.
func loadOrCreateCert(dir, certFile, keyFile string) (*tls.Certificate, error) {
	if certFile != "" || keyFile != "" {
		if certFile == "" || keyFile == "" {
			return nil, errors.New("--tls-cert and --tls-key go together")
		}
		c, err := tls.LoadX509KeyPair(certFile, keyFile)
		if err != nil {
			return nil, fmt.Errorf("load the TLS certificate: %w", err)
		}
		return &c, nil
	}
	certFile, keyFile = statePath(dir, "agent.crt"), statePath(dir, "agent.key")
	if c, err := tls.LoadX509KeyPair(certFile, keyFile); err == nil {
		return &c, nil
	} else if !os.IsNotExist(err) && fileExists(certFile) {
		return nil, fmt.Errorf("load %s: %w (delete both agent.crt and agent.key to make a new one)", certFile, err)
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, err
	}
	serial, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 120))
	if err != nil {
		return nil, err
	}
	host, _ := os.Hostname()
	tmpl := &x509.Certificate{
		SerialNumber: serial,
		Subject:      pkix.Name{CommonName: host, Organization: []string{"crowbar agent"}},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().AddDate(10, 0, 0),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		DNSNames:     []string{host, "localhost"},
		IPAddresses:  []net.IP{net.IPv4(127, 0, 0, 1), net.IPv6loopback},
	}
	if addrs, err := net.InterfaceAddrs(); err == nil {
		for _, a := range addrs {
			if ipn, ok := a.(*net.IPNet); ok && !ipn.IP.IsLoopback() {
				tmpl.IPAddresses = append(tmpl.IPAddresses, ipn.IP)
			}
		}
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return nil, err
	}
	kder, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		return nil, err
	}
	if err := os.WriteFile(keyFile, pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kder}), 0o600); err != nil {
		return nil, err
	}
	if err := os.WriteFile(certFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o644); err != nil {
		return nil, err
	}
	c, err := tls.LoadX509KeyPair(certFile, keyFile)
	if err != nil {
		return nil, err
	}
	return &c, nil
}

func fingerprintOf(c *tls.Certificate) string {
	if c == nil || len(c.Certificate) == 0 {
		return ""
	}
	return core0.Fingerprint(c.Certificate[0])
}

func fileExists(p string) bool {
	_, err := os.Stat(p)
	return err == nil
}

// identity is what the agent keeps from its last join.
type identity struct {
	Server   string `json:"server"`
	NodeID   int64  `json:"node_id"`
	Name     string `json:"name"`
	ZeroOSID string `json:"zero_os_id"`
	AgentKey string `json:"agent_key"`
	TokenKey string `json:"token_key"`
}

func (id *identity) tokenKey() string {
	if id == nil {
		return ""
	}
	return id.TokenKey
}

func loadIdentity(dir string) (*identity, error) {
	b, err := os.ReadFile(statePath(dir, "identity.json"))
	if os.IsNotExist(err) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	var id identity
	if err := json.Unmarshal(b, &id); err != nil {
		return nil, fmt.Errorf("%s is corrupt (delete it and join again): %w", statePath(dir, "identity.json"), err)
	}
	return &id, nil
}

func saveIdentity(dir string, id *identity) error {
	b, err := json.MarshalIndent(id, "", "  ")
	if err != nil {
		return err
	}
	tmp := statePath(dir, "identity.json.tmp")
	if err := os.WriteFile(tmp, b, 0o600); err != nil {
		return err
	}
	return os.Rename(tmp, statePath(dir, "identity.json"))
}
