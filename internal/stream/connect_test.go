package stream_test

import (
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nkeys"

	"github.com/callreport/callreport/internal/config"
	"github.com/callreport/callreport/internal/stream"
	"github.com/callreport/callreport/internal/tlstest"
)

// runServer runs a NATS server with opts until the test ends.
func runServer(t *testing.T, opts *server.Options) *server.Server {
	t.Helper()
	opts.Host, opts.Port, opts.NoLog, opts.NoSigs = "127.0.0.1", -1, true, true
	s, err := server.NewServer(opts)
	if err != nil {
		t.Fatal(err)
	}
	go s.Start()
	if !s.ReadyForConnections(10 * time.Second) {
		t.Fatal("NATS server not ready")
	}
	t.Cleanup(s.Shutdown)
	return s
}

var discard = slog.New(slog.NewTextHandler(io.Discard, nil))

// TestConnectNKey: with NATS_NKEY the client authenticates with the seed of
// that file; without it the server refuses, and no error prints the seed.
func TestConnectNKey(t *testing.T) {
	kp, err := nkeys.CreateUser()
	if err != nil {
		t.Fatal(err)
	}
	pub, _ := kp.PublicKey()
	seed, _ := kp.Seed()
	s := runServer(t, &server.Options{Nkeys: []*server.NkeyUser{{Nkey: pub}}})
	seedFile := filepath.Join(t.TempDir(), "user.nk")
	if err := os.WriteFile(seedFile, seed, 0o600); err != nil {
		t.Fatal(err)
	}

	c := config.NATS{URL: config.Secret(s.ClientURL()), NKey: seedFile}
	nc, err := stream.Connect(c, "test", discard)
	if err != nil {
		t.Fatalf("connect with the NKey seed: %v", err)
	}
	nc.Close()

	c.NKey = ""
	if _, err := stream.Connect(c, "test", discard); err == nil || !strings.Contains(err.Error(), "Authorization") {
		t.Errorf("connect without credentials: %v, want an authorization error", err)
	}
	c.NKey = filepath.Join(t.TempDir(), "missing.nk")
	if _, err := stream.Connect(c, "test", discard); err == nil || strings.Contains(err.Error(), string(seed)) {
		t.Errorf("connect with a missing seed file: %v", err)
	}
}

// TestConnectCreds: NATS_CREDS hands the client a user JWT and its seed
// (the server's side, operator mode, is the deployment's).
func TestConnectCreds(t *testing.T) {
	dir := t.TempDir()
	creds := filepath.Join(dir, "user.creds")
	kp, _ := nkeys.CreateUser()
	seed, _ := kp.Seed()
	body := "-----BEGIN NATS USER JWT-----\neyJhbGciOiJlZDI1NTE5In0.e30.sig\n------END NATS USER JWT------\n\n" +
		"-----BEGIN USER NKEY SEED-----\n" + string(seed) + "\n------END USER NKEY SEED------\n"
	if err := os.WriteFile(creds, []byte(body), 0o600); err != nil {
		t.Fatal(err)
	}
	opts, err := stream.Options(config.NATS{Creds: creds})
	if err != nil || len(opts) != 1 {
		t.Fatalf("options of a creds file: %d, %v", len(opts), err)
	}
	o := nats.GetDefaultOptions()
	if err := opts[0](&o); err != nil {
		t.Fatal(err)
	}
	if o.UserJWT == nil || o.SignatureCB == nil {
		t.Error("the creds file does not set the user JWT and signature callbacks")
	}
	if _, err := stream.Options(config.NATS{Creds: filepath.Join(dir, "missing.creds")}); err == nil {
		t.Error("a missing creds file was accepted")
	}
}

// TestConnectTLS: NATS_TLS_CA verifies the server, NATS_TLS_CERT and
// NATS_TLS_KEY are the client certificate a server requiring one checks.
func TestConnectTLS(t *testing.T) {
	ca := tlstest.New(t)
	serverCert, serverKey := ca.Issue(t, "server", false)
	clientCert, clientKey := ca.Issue(t, "client", true)
	caFile := ca.File
	tc, err := server.GenTLSConfig(&server.TLSConfigOpts{CertFile: serverCert, KeyFile: serverKey, CaFile: caFile, Verify: true})
	if err != nil {
		t.Fatal(err)
	}
	s := runServer(t, &server.Options{TLSConfig: tc, TLS: true, TLSVerify: true, TLSTimeout: 5})
	url := strings.Replace(s.ClientURL(), "nats://", "tls://", 1)

	c := config.NATS{URL: config.Secret(url), TLSCA: caFile, TLSCert: clientCert, TLSKey: clientKey}
	nc, err := stream.Connect(c, "test", discard)
	if err != nil {
		t.Fatalf("connect over TLS with a client certificate: %v", err)
	}
	if _, err := nc.TLSConnectionState(); err != nil {
		t.Errorf("not over TLS: %v", err)
	}
	nc.Close()
	c.TLSCert, c.TLSKey = "", ""
	if _, err := stream.Connect(c, "test", discard); err == nil {
		t.Error("a server requiring a client certificate let a client without one in")
	}
	c.TLSCA = ""
	c.TLSCert, c.TLSKey = clientCert, clientKey
	if _, err := stream.Connect(c, "test", discard); err == nil {
		t.Error("a server certificate of an unknown CA was trusted")
	}
}
