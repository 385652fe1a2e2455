package main

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"time"
)

// pki holds the paths of everything the apiserver and its clients need. The CA
// key is kept so that tests could mint more client certificates later.
type pki struct {
	dir string

	caCert, caKey             string
	servingCert, servKey      string
	adminCert, adminKey       string
	saPublic, saPrivate       string
	caPEM                     []byte
	adminCertPEM, adminKeyPEM []byte
}

// newPKI writes a fresh CA, a serving certificate, an admin client certificate and
// a service-account key pair into dir. P-256 keys are used throughout: they are
// fast to generate on a busy machine and accepted by rustls, client-go and the
// service-account token signer alike.
func newPKI(dir string) (*pki, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, err
	}
	p := &pki{
		dir:         dir,
		caCert:      filepath.Join(dir, "ca.crt"),
		caKey:       filepath.Join(dir, "ca.key"),
		servingCert: filepath.Join(dir, "apiserver.crt"),
		servKey:     filepath.Join(dir, "apiserver.key"),
		adminCert:   filepath.Join(dir, "admin.crt"),
		adminKey:    filepath.Join(dir, "admin.key"),
		saPublic:    filepath.Join(dir, "sa.pub"),
		saPrivate:   filepath.Join(dir, "sa.key"),
	}

	now := time.Now()
	// Backdated so that a clock skew between processes never yields "not yet valid".
	notBefore := now.Add(-time.Hour)
	notAfter := now.Add(365 * 24 * time.Hour)

	caKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, err
	}
	caTemplate := &x509.Certificate{
		SerialNumber:          mustSerial(),
		Subject:               pkix.Name{CommonName: "confluence-operator-test-ca"},
		NotBefore:             notBefore,
		NotAfter:              notAfter,
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign | x509.KeyUsageDigitalSignature,
		BasicConstraintsValid: true,
		IsCA:                  true,
	}
	caDER, err := x509.CreateCertificate(rand.Reader, caTemplate, caTemplate, caKey.Public(), caKey)
	if err != nil {
		return nil, fmt.Errorf("CA certificate: %w", err)
	}
	ca, err := x509.ParseCertificate(caDER)
	if err != nil {
		return nil, err
	}
	p.caPEM = pemBlock("CERTIFICATE", caDER)
	if err := writeFile(p.caCert, p.caPEM); err != nil {
		return nil, err
	}
	if err := writeKey(p.caKey, caKey); err != nil {
		return nil, err
	}

	// rustls only matches IP addresses against IP SANs, never against the CN, so the
	// loopback IP must be listed; 10.0.0.1 is the in-cluster "kubernetes" Service IP
	// of --service-cluster-ip-range.
	servingTemplate := &x509.Certificate{
		SerialNumber: mustSerial(),
		Subject:      pkix.Name{CommonName: "kube-apiserver"},
		NotBefore:    notBefore,
		NotAfter:     notAfter,
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		IPAddresses:  []net.IP{net.ParseIP("127.0.0.1"), net.ParseIP("10.0.0.1"), net.IPv6loopback},
		DNSNames:     []string{"localhost", "kubernetes", "kubernetes.default", "kubernetes.default.svc", "kubernetes.default.svc.cluster.local"},
	}
	if _, _, err := issue(servingTemplate, ca, caKey, p.servingCert, p.servKey); err != nil {
		return nil, fmt.Errorf("serving certificate: %w", err)
	}

	// system:masters bypasses RBAC: only the test harness itself uses this identity.
	adminTemplate := &x509.Certificate{
		SerialNumber: mustSerial(),
		Subject:      pkix.Name{CommonName: "admin", Organization: []string{"system:masters"}},
		NotBefore:    notBefore,
		NotAfter:     notAfter,
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
	}
	p.adminCertPEM, p.adminKeyPEM, err = issue(adminTemplate, ca, caKey, p.adminCert, p.adminKey)
	if err != nil {
		return nil, fmt.Errorf("admin certificate: %w", err)
	}

	saKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, err
	}
	if err := writeKey(p.saPrivate, saKey); err != nil {
		return nil, err
	}
	saPubDER, err := x509.MarshalPKIXPublicKey(saKey.Public())
	if err != nil {
		return nil, err
	}
	if err := writeFile(p.saPublic, pemBlock("PUBLIC KEY", saPubDER)); err != nil {
		return nil, err
	}
	return p, nil
}

// issue signs template with the CA and writes certificate and key; it returns both
// as PEM so they can be embedded in the kubeconfig.
func issue(template, ca *x509.Certificate, caKey crypto.Signer, certPath, keyPath string) ([]byte, []byte, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, nil, err
	}
	der, err := x509.CreateCertificate(rand.Reader, template, ca, key.Public(), caKey)
	if err != nil {
		return nil, nil, err
	}
	certPEM := pemBlock("CERTIFICATE", der)
	if err := writeFile(certPath, certPEM); err != nil {
		return nil, nil, err
	}
	keyPEM, err := keyPEM(key)
	if err != nil {
		return nil, nil, err
	}
	if err := writeFile(keyPath, keyPEM); err != nil {
		return nil, nil, err
	}
	return certPEM, keyPEM, nil
}

// keyPEM uses PKCS#8 because every consumer (client-go, kubectl, rustls) reads it.
func keyPEM(key crypto.Signer) ([]byte, error) {
	der, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return nil, err
	}
	return pemBlock("PRIVATE KEY", der), nil
}

func writeKey(path string, key crypto.Signer) error {
	data, err := keyPEM(key)
	if err != nil {
		return err
	}
	return writeFile(path, data)
}

func pemBlock(kind string, der []byte) []byte {
	return pem.EncodeToMemory(&pem.Block{Type: kind, Bytes: der})
}

func writeFile(path string, data []byte) error {
	return os.WriteFile(path, data, 0o600)
}

func mustSerial() *big.Int {
	serial, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 127))
	if err != nil {
		// crypto/rand never fails on Linux; if it does, nothing else here would work.
		panic(err)
	}
	return serial
}
