package config

import (
	"bytes"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"net"
	"net/url"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"
)

func TestRedact(t *testing.T) {
	tests := []struct{ in, want string }{
		{"postgres://postgres@127.0.0.1:5432/callreport?sslmode=disable", "postgres://postgres@127.0.0.1:5432/callreport?sslmode=disable"},
		{"postgres://app:s3cr3t@db:5432/callreport", "postgres://app:xxxxx@db:5432/callreport"},
		{"postgres://app@db/callreport?password=s3cr3t&sslmode=require", "postgres://app@db/callreport?password=xxxxx&sslmode=require"},
		{"host=db user=app password=s3cr3t dbname=callreport", "host=db user=app password=xxxxx dbname=callreport"},
		{"host=db password='s3 cr\\'et' dbname=x", "host=db password=xxxxx dbname=x"},
		{"nats://u:s3cr3t@a:4222,nats://b:4222", "nats://u:xxxxx@a:4222,nats://b:4222"},
		{"nats://s3cr3ttoken@a:4222", "nats://xxxxx@a:4222"},
		{"nats://127.0.0.1:4222", "nats://127.0.0.1:4222"},
		{"::not a url:s3cr3t@host", "xxxxx@host"},
	}
	for _, tt := range tests {
		if got := Redact(tt.in); got != tt.want {
			t.Errorf("Redact(%q) = %q, want %q", tt.in, got, tt.want)
		}
		if strings.Contains(Redact(tt.in), "s3cr3t") {
			t.Errorf("Redact(%q) leaks the secret", tt.in)
		}
	}
}

// TestSecretNeverPrinted checks every way a Secret is printed: help output
// (the flag default from the environment), fmt verbs, slog.
func TestSecretNeverPrinted(t *testing.T) {
	t.Setenv("DATABASE_URL", "postgres://app:s3cr3t@db/callreport")
	t.Setenv("NATS_URL", "nats://u:s3cr3t@a:4222")
	fs := flag.NewFlagSet("x", flag.ContinueOnError)
	var out bytes.Buffer
	fs.SetOutput(&out)
	c := Register(fs, SectionDatabase, SectionNATS)
	fs.PrintDefaults()
	var logged bytes.Buffer
	slog.New(slog.NewTextHandler(&logged, nil)).Info("config", "db", c.Database.URL, "nats", c.NATS.URL, "all", c)
	slog.New(slog.NewJSONHandler(&logged, nil)).Info("config", "db", c.Database.URL, "nats", c.NATS.URL, "all", c, "value", *c)
	js, _ := json.Marshal(c)
	logged.Write(js)
	printed := out.String() + logged.String() +
		fmt.Sprint(c.Database.URL) + fmt.Sprintf("%v %s %+v %#v", c.NATS.URL, c.NATS.URL, *c, *c)
	if strings.Contains(printed, "s3cr3t") {
		t.Fatalf("a secret was printed:\n%s", printed)
	}
	if c.Database.URL.Value() != "postgres://app:s3cr3t@db/callreport" {
		t.Fatalf("Value() = %q", c.Database.URL.Value())
	}
}

func TestRegister(t *testing.T) {
	t.Setenv("CALLREPORT_STREAM", "FROM_ENV")
	t.Setenv("CALLREPORT_BATCH_SIZE", "77")
	fs := flag.NewFlagSet("x", flag.ContinueOnError)
	c := Register(fs, SectionNATS, SectionProjector)
	if err := fs.Parse([]string{"-dlq-stream", "FROM_FLAG"}); err != nil {
		t.Fatal(err)
	}
	if c.NATS.Stream != "FROM_ENV" || c.NATS.DLQStream != "FROM_FLAG" || c.Projector.BatchSize != 77 {
		t.Fatalf("got %+v", c)
	}
	if fs.Lookup("http-addr") != nil || fs.Lookup("database-url") != nil {
		t.Fatal("sections not asked for were registered")
	}
	if c.HTTP.Addr != DefaultHTTPAddr {
		t.Fatalf("unregistered sections keep their defaults, got %q", c.HTTP.Addr)
	}
	if err := c.Validate(); err != nil {
		t.Fatal(err)
	}
	c.Log.Format = "xml"
	if err := c.Validate(); err == nil {
		t.Fatal("a bad log format passed")
	}
}

func TestNewSettings(t *testing.T) {
	t.Setenv("NATS_NKEY", "/etc/callreport/projector.nk")
	t.Setenv("CALLREPORT_DLQ_MAX_AGE", "48h")
	t.Setenv("CALLREPORT_DLQ_MAX_BYTES", "1048576")
	t.Setenv("QUERY_METRICS_ADDR", "")
	t.Setenv("HTTP_TRUSTED_PROXIES", "10.0.0.0/8, 192.0.2.7")
	t.Setenv("HTTP_UPDATES_PER_KEY", "20")
	fs := flag.NewFlagSet("x", flag.ContinueOnError)
	c := Register(fs, SectionNATS, SectionHTTP)
	if err := fs.Parse([]string{"-http-tls-cert", "c.pem", "-http-tls-key", "k.pem", "-updates-per-process", "500"}); err != nil {
		t.Fatal(err)
	}
	if c.NATS.NKey != "/etc/callreport/projector.nk" || c.NATS.DLQMaxAge != 48*time.Hour || c.NATS.DLQMaxBytes != 1<<20 ||
		c.HTTP.MetricsAddr != "" || c.HTTP.TLSCert != "c.pem" || c.HTTP.TLSKey != "k.pem" ||
		c.HTTP.UpdatesPerKey != 20 || c.HTTP.UpdatesPerProcess != 500 {
		t.Errorf("got %+v %+v", c.NATS, c.HTTP)
	}
	if err := c.Validate(); err != nil {
		t.Fatal(err)
	}
	nets, err := c.HTTP.Proxies()
	if err != nil || len(nets) != 2 || !nets[0].Contains(net.ParseIP("10.1.2.3")) || !nets[1].Contains(net.ParseIP("192.0.2.7")) || nets[1].Contains(net.ParseIP("192.0.2.8")) {
		t.Errorf("proxies %v %v", nets, err)
	}
	if d := Default(); d.HTTP.MetricsAddr != "127.0.0.1:9092" || d.NATS.DLQMaxBytes != 1<<30 || d.NATS.DLQMaxAge != 720*time.Hour ||
		d.HTTP.UpdatesPerKey != 100 || d.HTTP.UpdatesPerProcess != 10_000 {
		t.Errorf("defaults %+v %+v", d.HTTP, d.NATS)
	}

	for name, set := range map[string]func(*Config){
		"half a TLS pair":       func(c *Config) { c.HTTP.TLSKey = "" },
		"half a NATS TLS pair":  func(c *Config) { c.NATS.TLSCert = "x.pem" },
		"creds and nkey":        func(c *Config) { c.NATS.Creds = "x.creds" },
		"a proxy that is not":   func(c *Config) { c.HTTP.TrustedProxies = []string{"proxy.example"} },
		"negative dlq max size": func(c *Config) { c.NATS.DLQMaxBytes = -1 },
		"negative stream bound": func(c *Config) { c.HTTP.UpdatesPerKey = -1 },
	} {
		bad := *c
		set(&bad)
		if err := bad.Validate(); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
	t.Setenv("CALLREPORT_DLQ_MAX_AGE", "a month")
	bad := Register(flag.NewFlagSet("y", flag.ContinueOnError), SectionNATS)
	if err := bad.Validate(); err == nil || !strings.Contains(err.Error(), "CALLREPORT_DLQ_MAX_AGE") {
		t.Errorf("a malformed duration in the environment: %v", err)
	}
}

// TestScrub: what a library quotes of a connection string (net/url's parse
// error quotes it whole) loses its secrets, in errors and in logs.
func TestScrub(t *testing.T) {
	t.Setenv("DATABASE_URL", "postgres://app:pg-s3cr3t@db:5432/callreport")
	t.Setenv("NATS_URL", "nats://u:n%40ts-s3cr3t@a:bad,nats://tok-s3cr3t@b:4222")
	c := Register(flag.NewFlagSet("x", flag.ContinueOnError), SectionDatabase, SectionNATS)
	_, perr := url.Parse(strings.Split(c.NATS.URL.Value(), ",")[0])
	for _, msg := range []string{
		perr.Error(),
		"connect: " + c.Database.URL.Value(),
		"password pg-s3cr3t was refused; the token tok-s3cr3t too; n@ts-s3cr3t unescaped",
	} {
		got := ScrubString(msg)
		if strings.Contains(got, "s3cr3t") {
			t.Errorf("ScrubString(%q) = %q", msg, got)
		}
	}
	base := errors.New("base")
	err := Scrub(fmt.Errorf("open %s: %w", c.Database.URL.Value(), base))
	if strings.Contains(err.Error(), "s3cr3t") || !errors.Is(err, base) {
		t.Errorf("Scrub: %q, Is(base) = %v", err, errors.Is(err, base))
	}
	var logged bytes.Buffer
	log, err := c.Log.Logger(&logged)
	if err != nil {
		t.Fatal(err)
	}
	log.Error("failed", "err", perr, "raw", c.Database.URL.Value())
	if strings.Contains(logged.String(), "s3cr3t") || !strings.Contains(logged.String(), "xxxxx") {
		t.Errorf("log: %s", logged.String())
	}
	if got := ScrubString("postgres://postgres@localhost/x and nothing secret"); got != "postgres://postgres@localhost/x and nothing secret" {
		t.Errorf("text without secrets changed: %q", got)
	}
}

// TestPanicRedacted: a panic prints its value with Error or String, so a
// Secret (or an error that prints one) is redacted there too. The panic
// happens in a child process, as in a real crash.
func TestPanicRedacted(t *testing.T) {
	if os.Getenv("CONFIG_TEST_PANIC") != "" {
		c := Register(flag.NewFlagSet("x", flag.ContinueOnError), SectionDatabase)
		switch os.Getenv("CONFIG_TEST_PANIC") {
		case "secret":
			panic(c.Database.URL)
		case "error":
			panic(fmt.Errorf("open %s: %w", c.Database.URL, errors.New("boom")))
		case "config":
			panic(*c)
		case "goroutine":
			done := make(chan struct{})
			go func() { panic(fmt.Errorf("open %v", c.Database)) }()
			<-done
		}
		return
	}
	for _, kind := range []string{"secret", "error", "config", "goroutine"} {
		cmd := exec.Command(os.Args[0], "-test.run=^TestPanicRedacted$")
		cmd.Env = append(os.Environ(), "CONFIG_TEST_PANIC="+kind, "DATABASE_URL=postgres://app:p4n1c-s3cr3t@db/callreport")
		out, err := cmd.CombinedOutput()
		if err == nil || !strings.Contains(string(out), "panic: ") {
			t.Fatalf("%s: the child did not panic: %v\n%s", kind, err, out)
		}
		if strings.Contains(string(out), "s3cr3t") {
			t.Errorf("%s: the panic printed the secret:\n%s", kind, out)
		}
	}
}
