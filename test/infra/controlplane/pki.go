package main

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"time"
)

// The serving certificate must be valid for every name a client uses:
// loopback for tests on the host, 10.0.2.2 for agents inside the qemu test VM
// (user-mode networking maps it to the host's loopback), the in-cluster
// service names, and the first IP of the service range (the "kubernetes"
// Service's ClusterIP).
var (
	servingIPs = []net.IP{
		net.ParseIP("127.0.0.1"), net.ParseIP("::1"), net.ParseIP("10.0.2.2"), net.ParseIP(serviceClusterIP),
	}
	servingDNSNames = []string{
		"localhost", "kubernetes", "kubernetes.default", "kubernetes.default.svc",
		"kubernetes.default.svc.cluster.local",
	}
)

// pki holds the paths of the files the apiserver and the kubeconfig use.
type pki struct {
	dir                              string
	caCert, caKey                    string
	servingCert, servingKey          string
	adminCert, adminKey              string
	serviceAccountKey, serviceAccPub string
}

func newPKI(dataDir string) pki {
	d := filepath.Join(dataDir, "pki")
	return pki{
		dir:    d,
		caCert: filepath.Join(d, "ca.crt"), caKey: filepath.Join(d, "ca.key"),
		servingCert: filepath.Join(d, "apiserver.crt"), servingKey: filepath.Join(d, "apiserver.key"),
		adminCert: filepath.Join(d, "admin.crt"), adminKey: filepath.Join(d, "admin.key"),
		serviceAccountKey: filepath.Join(d, "sa.key"), serviceAccPub: filepath.Join(d, "sa.pub"),
	}
}

// ensure creates what is missing. The CA and the ServiceAccount signing key
// are kept across restarts on the same data dir, so kubeconfigs and tokens
// issued before a restart stay valid; the leaf certificates are re-issued on
// every start (cheap, and a change of SANs here takes effect at once).
func (p pki) ensure() error {
	if err := os.MkdirAll(p.dir, 0o700); err != nil {
		return err
	}
	caCert, caKey, err := loadOrCreateCA(p.caCert, p.caKey)
	if err != nil {
		return fmt.Errorf("certificate authority: %w", err)
	}
	if err := ensureServiceAccountKey(p.serviceAccountKey, p.serviceAccPub); err != nil {
		return fmt.Errorf("service account signing key: %w", err)
	}
	serving := &x509.Certificate{
		Subject:     pkix.Name{CommonName: "kube-apiserver"},
		DNSNames:    servingDNSNames,
		IPAddresses: servingIPs,
		KeyUsage:    x509.KeyUsageDigitalSignature,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	if err := issue(serving, caCert, caKey, p.servingCert, p.servingKey); err != nil {
		return fmt.Errorf("serving certificate: %w", err)
	}
	// system:masters is bound to cluster-admin by the bootstrap RBAC policy,
	// and RBAC short-circuits it: the admin kubeconfig works from the first
	// request, before the policy is even written.
	admin := &x509.Certificate{
		Subject:     pkix.Name{CommonName: "kubernetes-admin", Organization: []string{"system:masters"}},
		KeyUsage:    x509.KeyUsageDigitalSignature,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
	}
	if err := issue(admin, caCert, caKey, p.adminCert, p.adminKey); err != nil {
		return fmt.Errorf("admin client certificate: %w", err)
	}
	return nil
}

func loadOrCreateCA(certPath, keyPath string) (*x509.Certificate, crypto.Signer, error) {
	certPEM, errCert := os.ReadFile(certPath)
	keyPEM, errKey := os.ReadFile(keyPath)
	if errCert == nil && errKey == nil {
		cert, err := parseCert(certPEM)
		if err != nil {
			return nil, nil, fmt.Errorf("%s: %w (delete the data dir to start afresh)", certPath, err)
		}
		key, err := parseKey(keyPEM)
		if err != nil {
			return nil, nil, fmt.Errorf("%s: %w (delete the data dir to start afresh)", keyPath, err)
		}
		return cert, key, nil
	}
	if !errors.Is(errCert, os.ErrNotExist) && errCert != nil {
		return nil, nil, errCert
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, nil, err
	}
	tmpl := &x509.Certificate{
		SerialNumber:          serial(),
		Subject:               pkix.Name{CommonName: "ipsec-operator-test-ca"},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().AddDate(10, 0, 0),
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature | x509.KeyUsageCRLSign,
		BasicConstraintsValid: true,
		IsCA:                  true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, key.Public(), key)
	if err != nil {
		return nil, nil, err
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, nil, err
	}
	if err := writeKey(keyPath, key); err != nil {
		return nil, nil, err
	}
	if err := writePEM(certPath, "CERTIFICATE", der, 0o644); err != nil {
		return nil, nil, err
	}
	return cert, key, nil
}

func ensureServiceAccountKey(keyPath, pubPath string) error {
	if _, err := os.Stat(keyPath); err == nil {
		if _, err := os.Stat(pubPath); err == nil {
			return nil
		}
	}
	// ES256 is accepted by the token signer and the authenticator, and is
	// generated instantly (an RSA key would cost a noticeable second).
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return err
	}
	pub, err := x509.MarshalPKIXPublicKey(key.Public())
	if err != nil {
		return err
	}
	if err := writeKey(keyPath, key); err != nil {
		return err
	}
	return writePEM(pubPath, "PUBLIC KEY", pub, 0o644)
}

func issue(tmpl, ca *x509.Certificate, caKey crypto.Signer, certPath, keyPath string) error {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return err
	}
	tmpl.SerialNumber = serial()
	tmpl.NotBefore = time.Now().Add(-time.Hour)
	tmpl.NotAfter = time.Now().AddDate(1, 0, 0)
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca, key.Public(), caKey)
	if err != nil {
		return err
	}
	if err := writeKey(keyPath, key); err != nil {
		return err
	}
	return writePEM(certPath, "CERTIFICATE", der, 0o644)
}

func serial() *big.Int {
	n, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 62))
	if err != nil {
		panic(err) // crypto/rand never fails on Linux
	}
	return n
}

func writeKey(path string, key *ecdsa.PrivateKey) error {
	der, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		return err
	}
	return writePEM(path, "EC PRIVATE KEY", der, 0o600)
}

// writePEM writes through a temporary file and a rename, so a crash never
// leaves a half-written key that a later start would fail to parse.
func writePEM(path, blockType string, der []byte, mode os.FileMode) error {
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, pem.EncodeToMemory(&pem.Block{Type: blockType, Bytes: der}), mode); err != nil {
		return err
	}
	return os.Rename(tmp, path)
}

func parseCert(data []byte) (*x509.Certificate, error) {
	block, _ := pem.Decode(data)
	if block == nil || block.Type != "CERTIFICATE" {
		return nil, errors.New("no PEM CERTIFICATE block")
	}
	return x509.ParseCertificate(block.Bytes)
}

func parseKey(data []byte) (crypto.Signer, error) {
	block, _ := pem.Decode(data)
	if block == nil || block.Type != "EC PRIVATE KEY" {
		return nil, errors.New("no PEM EC PRIVATE KEY block")
	}
	return x509.ParseECPrivateKey(block.Bytes)
}
