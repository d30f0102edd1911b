// Package config is the configuration of every callreport process, in
// sections (log, database, NATS, HTTP, projector) that each binary takes as
// it needs them. Every setting is read the same way everywhere: an
// environment variable gives its default, a flag of the same name overrides
// it. Secrets are redacted wherever a value is shown: in -h output, in
// errors and in logs.
//
// The package holds values only: it opens no connection and imports neither
// the NATS client nor the projector, so that the query binary links neither.
package config

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"strconv"
	"strings"
	"time"
)

// Config is every section. A binary registers the sections it uses; the
// others keep their zero values.
type Config struct {
	Log       Log
	Database  Database
	NATS      NATS
	HTTP      HTTP
	Projector Projector

	// envErrs are the malformed environment values Register met, for
	// Validate to report.
	envErrs []error
}

// Log says how a process logs.
type Log struct {
	Format string // text or json
	Level  string // debug, info, warn, error
}

// Database is the Postgres the process works on.
type Database struct {
	// URL is a pgx connection string; its password is a secret.
	URL Secret
	// Migrate applies pending migrations at start instead of refusing to
	// run on a database that is behind.
	Migrate bool
}

// NATS is the JetStream server, how to authenticate to it, and the names
// and limits of the projection's streams.
type NATS struct {
	// URL is one server URL or a comma-separated list; passwords and
	// tokens in it are secrets.
	URL Secret
	// Creds is a credentials file (a user JWT and its NKey seed), NKey a
	// file holding an NKey seed: paths, not secrets, so they may be shown.
	Creds string
	NKey  string
	// TLSCA verifies the server's certificate; TLSCert and TLSKey are the
	// client certificate the server may require. Paths to PEM files.
	TLSCA   string
	TLSCert string
	TLSKey  string

	Stream        string // events, CALL_EVENTS by default
	DLQStream     string // dead letters, CALL_EVENTS_DLQ
	SubjectPrefix string // first token of event subjects, callevents
	DLQPrefix     string // first token of dead-letter subjects, callevents_dlq
	// Partitions divides the events into partitions by their id token,
	// each projected by its own consumer (1: none).
	Partitions int
	// Replicas is the number of copies a JetStream cluster keeps of the
	// event stream and the dead-letter stream Ensure creates (1 to 5).
	Replicas int
	// DLQMaxAge and DLQMaxBytes bound the dead-letter stream, which then
	// discards its oldest messages; 0 means no bound.
	DLQMaxAge   time.Duration
	DLQMaxBytes int64
}

// HTTP is the query process's listeners.
type HTTP struct {
	Addr string // the API, /healthz and /readyz
	// TLSCert and TLSKey, both set, serve Addr over TLS (PEM files).
	TLSCert string
	TLSKey  string
	// MetricsAddr serves /metrics apart from the public listener; "" for
	// no metrics listener.
	MetricsAddr string
	// TrustedProxies are the addresses (CIDR ranges, or single addresses)
	// whose X-Forwarded-For header names the client; from any other peer
	// the header is ignored.
	TrustedProxies []string
	// UpdatesPerKey and UpdatesPerProcess bound the live-update streams
	// open at once, of one API key and in all.
	UpdatesPerKey, UpdatesPerProcess int
}

// Projector tunes the projector process.
type Projector struct {
	Consumer    string // durable JetStream consumer
	MetricsAddr string // /metrics, /healthz and /readyz
	BatchSize   int    // most events a live batch applies
	// BulkThreshold is how many pending events make the projector work in
	// bulk (large batches, COPY).
	BulkThreshold int
	// MemoryBudget, in MiB, is the memory the projector aims to stay
	// within: it sizes the batches and is the Go runtime's soft limit.
	MemoryBudget int
	// StallAfter is how long a batch may go uncommitted, events pending,
	// before /readyz fails.
	StallAfter time.Duration
	// RebuildOnMismatch rebuilds the reports before running live when they
	// were built by another fold version, instead of refusing to start.
	RebuildOnMismatch bool
}

// Defaults for a local machine, as the README's quick start runs it.
const (
	DefaultDatabaseURL = "postgres://postgres@127.0.0.1:5432/callreport?sslmode=disable"
	DefaultNATSURL     = "nats://127.0.0.1:4222"
	// MaxPartitions bounds CALLREPORT_PARTITIONS: each partition is a
	// durable consumer, a batch lock and a lease.
	MaxPartitions        = 1024
	DefaultHTTPAddr      = "127.0.0.1:8080"
	DefaultMetricsAddr   = "127.0.0.1:9091"
	DefaultQueryMetrics  = "127.0.0.1:9092"
	DefaultStream        = "CALL_EVENTS"
	DefaultDLQStream     = "CALL_EVENTS_DLQ"
	DefaultSubjectPrefix = "callevents"
	DefaultDLQPrefix     = "callevents_dlq"
	DefaultConsumer      = "callreport-projector"
	DefaultBatchSize     = 20000
	DefaultBulkThreshold = 20000
	DefaultMemoryBudget  = 192 // MiB
	DefaultStallAfter    = 30 * time.Second
	// Live-update streams of one API key, and of one query process.
	DefaultUpdatesPerKey     = 100
	DefaultUpdatesPerProcess = 10_000
	// The dead-letter stream keeps 30 days and 1 GiB at most: enough to
	// notice and act on a producer's bug, bounded whatever it sends.
	DefaultDLQMaxAge   = 30 * 24 * time.Hour
	DefaultDLQMaxBytes = 1 << 30
)

// Section names a part of Config for Register.
type Section int

// The sections.
const (
	SectionLog Section = 1 << iota
	SectionDatabase
	SectionNATS
	SectionHTTP
	SectionProjector
	// SectionAll is every section: reportctl's commands take every flag,
	// so that one set of flags (or one environment) serves them all.
	SectionAll = SectionLog | SectionDatabase | SectionNATS | SectionHTTP | SectionProjector
)

// Default is the configuration with every default and no environment.
func Default() Config {
	return Config{
		Log:      Log{Format: "text", Level: "info"},
		Database: Database{URL: DefaultDatabaseURL},
		NATS: NATS{URL: DefaultNATSURL, Stream: DefaultStream, DLQStream: DefaultDLQStream,
			SubjectPrefix: DefaultSubjectPrefix, DLQPrefix: DefaultDLQPrefix, Partitions: 1, Replicas: 1,
			DLQMaxAge: DefaultDLQMaxAge, DLQMaxBytes: DefaultDLQMaxBytes},
		HTTP: HTTP{Addr: DefaultHTTPAddr, MetricsAddr: DefaultQueryMetrics,
			UpdatesPerKey: DefaultUpdatesPerKey, UpdatesPerProcess: DefaultUpdatesPerProcess},
		Projector: Projector{Consumer: DefaultConsumer, MetricsAddr: DefaultMetricsAddr, BatchSize: DefaultBatchSize,
			BulkThreshold: DefaultBulkThreshold, MemoryBudget: DefaultMemoryBudget, StallAfter: DefaultStallAfter},
	}
}

// Register adds the flags of the given sections to fs, each defaulting to
// its environment variable or else to Default, and returns the Config they
// fill once fs is parsed. The log section is always registered.
func Register(fs *flag.FlagSet, sections ...Section) *Config {
	c := Default()
	var want Section = SectionLog
	for _, s := range sections {
		want |= s
	}
	r := registrar{fs: fs, c: &c}
	if want&SectionLog != 0 {
		r.str(&c.Log.Format, "log-format", "LOG_FORMAT", "log format: text or json")
		r.str(&c.Log.Level, "log-level", "LOG_LEVEL", "log level: debug, info, warn, error")
	}
	if want&SectionDatabase != 0 {
		r.secret(&c.Database.URL, "database-url", "DATABASE_URL", "Postgres URL")
		r.boolean(&c.Database.Migrate, "migrate", "CALLREPORT_MIGRATE", "apply pending migrations at start instead of refusing to run")
	}
	if want&SectionNATS != 0 {
		r.secret(&c.NATS.URL, "nats-url", "NATS_URL", "NATS server URL, or a comma-separated list")
		r.str(&c.NATS.Creds, "nats-creds", "NATS_CREDS", "NATS credentials file (user JWT and NKey seed)")
		r.str(&c.NATS.NKey, "nats-nkey", "NATS_NKEY", "file holding the NKey seed to authenticate to NATS with")
		r.str(&c.NATS.TLSCA, "nats-tls-ca", "NATS_TLS_CA", "PEM file of the CA that signed the NATS server's certificate")
		r.str(&c.NATS.TLSCert, "nats-tls-cert", "NATS_TLS_CERT", "PEM file of the client certificate for NATS")
		r.str(&c.NATS.TLSKey, "nats-tls-key", "NATS_TLS_KEY", "PEM file of the client certificate's key for NATS")
		r.str(&c.NATS.Stream, "stream", "CALLREPORT_STREAM", "JetStream stream of the events")
		r.str(&c.NATS.DLQStream, "dlq-stream", "CALLREPORT_DLQ_STREAM", "dead-letter stream")
		r.str(&c.NATS.SubjectPrefix, "subject-prefix", "CALLREPORT_SUBJECT_PREFIX", "first token of event subjects")
		r.str(&c.NATS.DLQPrefix, "dlq-prefix", "CALLREPORT_DLQ_PREFIX", "first token of dead-letter subjects")
		r.integer(&c.NATS.Replicas, "stream-replicas", "CALLREPORT_STREAM_REPLICAS", "copies a JetStream cluster keeps of the streams it creates (1 to 5)")
		r.integer(&c.NATS.Partitions, "partitions", "CALLREPORT_PARTITIONS", "partitions of the event stream, each projected by a consumer of its own (the stream is created with them)")
		r.duration(&c.NATS.DLQMaxAge, "dlq-max-age", "CALLREPORT_DLQ_MAX_AGE", "oldest dead letter kept, 0 for no bound")
		r.int64(&c.NATS.DLQMaxBytes, "dlq-max-bytes", "CALLREPORT_DLQ_MAX_BYTES", "bytes of dead letters kept (the oldest go first), 0 for no bound")
	}
	if want&SectionHTTP != 0 {
		r.str(&c.HTTP.Addr, "http-addr", "HTTP_ADDR", "HTTP listen address of the query API")
		r.str(&c.HTTP.TLSCert, "http-tls-cert", "HTTP_TLS_CERT", "PEM certificate (chain) to serve the query API over TLS")
		r.str(&c.HTTP.TLSKey, "http-tls-key", "HTTP_TLS_KEY", "PEM key of -http-tls-cert")
		r.emptyable(&c.HTTP.MetricsAddr, "query-metrics-addr", "QUERY_METRICS_ADDR", "listen address of the query process's /metrics, \"\" for none")
		r.list(&c.HTTP.TrustedProxies, "trusted-proxies", "HTTP_TRUSTED_PROXIES", "comma-separated addresses or CIDR ranges of the proxies whose X-Forwarded-For names the client")
		r.integer(&c.HTTP.UpdatesPerKey, "updates-per-key", "HTTP_UPDATES_PER_KEY", "live-update streams one API key may have open (429 past it)")
		r.integer(&c.HTTP.UpdatesPerProcess, "updates-per-process", "HTTP_UPDATES_PER_PROCESS", "live-update streams a query process keeps open (429 past it)")
	}
	if want&SectionProjector != 0 {
		r.str(&c.Projector.Consumer, "consumer", "CALLREPORT_CONSUMER", "durable consumer of the projector")
		r.str(&c.Projector.MetricsAddr, "metrics-addr", "METRICS_ADDR", "listen address of the projector's /metrics, /healthz and /readyz")
		r.integer(&c.Projector.BatchSize, "batch-size", "CALLREPORT_BATCH_SIZE", "most events a live batch applies in one transaction")
		r.integer(&c.Projector.BulkThreshold, "bulk-threshold", "CALLREPORT_BULK_THRESHOLD", "pending events from which the projector works in bulk (large batches, COPY)")
		r.integer(&c.Projector.MemoryBudget, "memory-budget", "CALLREPORT_MEMORY_BUDGET", "MiB the projector aims to stay within: it sizes the batches and is the Go runtime's soft memory limit")
		r.duration(&c.Projector.StallAfter, "stall-after", "CALLREPORT_STALL_AFTER", "how long a batch may go uncommitted, events pending, before /readyz fails")
		r.boolean(&c.Projector.RebuildOnMismatch, "rebuild-on-mismatch", "CALLREPORT_REBUILD_ON_MISMATCH",
			"when the live reports were built by another fold version, rebuild them before running live instead of refusing to start")
	}
	return &c
}

// registrar registers flags whose defaults come from the environment. A
// malformed environment value is kept for Validate to report, rather than
// silently replaced by the default.
type registrar struct {
	fs *flag.FlagSet
	c  *Config
}

func help(text, env string) string { return text + " (env " + env + ")" }

func (r registrar) str(p *string, name, env, usage string) {
	if v, ok := os.LookupEnv(env); ok && v != "" {
		*p = v
	}
	r.fs.StringVar(p, name, *p, help(usage, env))
}

func (r registrar) secret(p *Secret, name, env, usage string) {
	if v, ok := os.LookupEnv(env); ok && v != "" {
		*p = Secret(v)
		remember(v)
	}
	r.fs.Var(p, name, help(usage, env))
}

func (r registrar) boolean(p *bool, name, env, usage string) {
	if v, ok := os.LookupEnv(env); ok && v != "" {
		*p = v == "true" || v == "1"
	}
	r.fs.BoolVar(p, name, *p, help(usage, env+"=true"))
}

// emptyable is a string flag whose environment variable may set it to "",
// as for an address that turns a listener off.
func (r registrar) emptyable(p *string, name, env, usage string) {
	if v, ok := os.LookupEnv(env); ok {
		*p = v
	}
	r.fs.StringVar(p, name, *p, help(usage, env))
}

func (r registrar) duration(p *time.Duration, name, env, usage string) {
	if v, ok := os.LookupEnv(env); ok && v != "" {
		if d, err := time.ParseDuration(v); err == nil && d >= 0 {
			*p = d
		} else {
			r.c.envErrs = append(r.c.envErrs, fmt.Errorf("%s %q: want a duration such as 720h", env, v))
		}
	}
	r.fs.DurationVar(p, name, *p, help(usage, env))
}

func (r registrar) int64(p *int64, name, env, usage string) {
	if v, ok := os.LookupEnv(env); ok && v != "" {
		if n, err := strconv.ParseInt(v, 10, 64); err == nil && n >= 0 {
			*p = n
		} else {
			r.c.envErrs = append(r.c.envErrs, fmt.Errorf("%s %q: want a number of bytes", env, v))
		}
	}
	r.fs.Int64Var(p, name, *p, help(usage, env))
}

// list is a comma-separated list.
func (r registrar) list(p *[]string, name, env, usage string) {
	if v, ok := os.LookupEnv(env); ok && v != "" {
		*p = splitList(v)
	}
	r.fs.Func(name, help(usage, env), func(v string) error {
		*p = splitList(v)
		return nil
	})
}

func splitList(v string) []string {
	var out []string
	for _, s := range strings.Split(v, ",") {
		if s = strings.TrimSpace(s); s != "" {
			out = append(out, s)
		}
	}
	return out
}

func (r registrar) integer(p *int, name, env, usage string) {
	if v, ok := os.LookupEnv(env); ok && v != "" {
		if n, err := strconv.Atoi(v); err == nil && n > 0 {
			*p = n
		}
	}
	r.fs.IntVar(p, name, *p, help(usage, env))
}

// Validate checks what a flag type cannot: the choices of the log section
// and the bounds of the projector's.
func (c *Config) Validate() error {
	errs := append([]error(nil), c.envErrs...)
	if _, err := c.Log.level(); err != nil {
		errs = append(errs, err)
	}
	if c.Log.Format != "text" && c.Log.Format != "json" {
		errs = append(errs, fmt.Errorf("log format %q: want text or json", c.Log.Format))
	}
	if c.HTTP.UpdatesPerKey < 0 || c.HTTP.UpdatesPerProcess < 0 {
		errs = append(errs, fmt.Errorf("live-update bounds %d per key, %d per process: want positive numbers", c.HTTP.UpdatesPerKey, c.HTTP.UpdatesPerProcess))
	}
	if c.Projector.BatchSize < 0 {
		errs = append(errs, fmt.Errorf("batch size %d: want a positive number", c.Projector.BatchSize))
	}
	if c.Projector.MemoryBudget < 0 || c.Projector.MemoryBudget > 0 && c.Projector.MemoryBudget < 32 {
		errs = append(errs, fmt.Errorf("memory budget %d MiB: want 32 or more", c.Projector.MemoryBudget))
	}
	if (c.HTTP.TLSCert == "") != (c.HTTP.TLSKey == "") {
		errs = append(errs, errors.New("HTTP TLS: set both HTTP_TLS_CERT and HTTP_TLS_KEY, or neither"))
	}
	if (c.NATS.TLSCert == "") != (c.NATS.TLSKey == "") {
		errs = append(errs, errors.New("NATS TLS: set both NATS_TLS_CERT and NATS_TLS_KEY, or neither"))
	}
	if c.NATS.Creds != "" && c.NATS.NKey != "" {
		errs = append(errs, errors.New("NATS: set NATS_CREDS or NATS_NKEY, not both"))
	}
	if _, err := c.HTTP.Proxies(); err != nil {
		errs = append(errs, err)
	}
	if c.NATS.Partitions < 1 || c.NATS.Partitions > MaxPartitions {
		errs = append(errs, fmt.Errorf("partitions %d: want 1 to %d", c.NATS.Partitions, MaxPartitions))
	}
	if c.NATS.Replicas < 1 || c.NATS.Replicas > 5 {
		errs = append(errs, fmt.Errorf("stream replicas %d: want 1 to 5", c.NATS.Replicas))
	}
	if c.NATS.DLQMaxAge < 0 || c.NATS.DLQMaxBytes < 0 {
		errs = append(errs, errors.New("dead-letter limits: want 0 (no bound) or more"))
	}
	return errors.Join(errs...)
}

func (l Log) level() (slog.Level, error) {
	var level slog.Level
	if err := level.UnmarshalText([]byte(l.Level)); err != nil {
		return 0, fmt.Errorf("log level %q: want debug, info, warn or error", l.Level)
	}
	return level, nil
}

// Logger builds the logger the log section asks for, writing to w with the
// secrets this process was given hidden (ScrubString), whatever quotes them.
func (l Log) Logger(w io.Writer) (*slog.Logger, error) {
	level, err := l.level()
	if err != nil {
		return nil, err
	}
	w = scrubWriter{w}
	opts := &slog.HandlerOptions{Level: level}
	switch l.Format {
	case "text":
		return slog.New(slog.NewTextHandler(w, opts)), nil
	case "json":
		return slog.New(slog.NewJSONHandler(w, opts)), nil
	}
	return nil, fmt.Errorf("log format %q: want text or json", l.Format)
}

// Proxies parses TrustedProxies: CIDR ranges, a single address standing
// for itself.
func (h HTTP) Proxies() ([]*net.IPNet, error) {
	var nets []*net.IPNet
	for _, p := range h.TrustedProxies {
		if !strings.Contains(p, "/") {
			ip := net.ParseIP(p)
			if ip == nil {
				return nil, fmt.Errorf("trusted proxy %q: want an IP address or a CIDR range", p)
			}
			bits := 128
			if ip4 := ip.To4(); ip4 != nil {
				ip, bits = ip4, 32
			}
			nets = append(nets, &net.IPNet{IP: ip, Mask: net.CIDRMask(bits, bits)})
			continue
		}
		_, n, err := net.ParseCIDR(p)
		if err != nil {
			return nil, fmt.Errorf("trusted proxy %q: want an IP address or a CIDR range", p)
		}
		nets = append(nets, n)
	}
	return nets, nil
}

// URLs splits the NATS URL list.
func (n NATS) URLs() []string {
	var urls []string
	for _, u := range strings.Split(n.URL.Value(), ",") {
		if u = strings.TrimSpace(u); u != "" {
			urls = append(urls, u)
		}
	}
	return urls
}
