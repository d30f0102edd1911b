package config

import (
	"bytes"
	"flag"
	"fmt"
	"log/slog"
	"strings"
	"testing"
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
