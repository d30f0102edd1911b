package deploy_test

import (
	"flag"
	"fmt"
	"os"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/callreport/callreport/internal/config"
)

const (
	composeFile = "compose/compose.yaml"
	nginxFile   = "compose/nginx.conf"
	dockerFile  = "Dockerfile"
)

// TestCompose checks the Compose file of the production layout against the
// code, since no Docker engine runs here: three NATS servers in one
// JetStream cluster whose routes name each other, a version with
// partition transforms; Postgres; a migration the processes wait for;
// three identical projectors and two query processes, given only settings
// the binaries know, with the partitions, replicas and NATS servers
// agreeing; one port in front of the query processes; an image that builds
// the three binaries.
func TestCompose(t *testing.T) {
	doc := mapping(t, composeFile, parseYAMLFile(t, composeFile), "name", "services", "networks", "volumes",
		"x-callreport", "x-environment", "x-nats")
	services := mapping(t, composeFile+" services", doc["services"],
		"nats-1", "nats-2", "nats-3", "postgres", "migrate", "projector", "query", "lb")
	known := envNames(t)
	volumes := obj(t, composeFile+" volumes", doc["volumes"])

	// NATS: a cluster of three, each routing to the other two.
	var urls []string
	for i := 1; i <= 3; i++ {
		name := fmt.Sprintf("nats-%d", i)
		svc := obj(t, name, services[name])
		image := str(t, name+" image", svc["image"])
		if m := regexp.MustCompile(`^nats:(\d+)\.(\d+)`).FindStringSubmatch(image); m == nil || !atLeast(m[1], m[2], 2, 10) {
			t.Errorf("%s: image %s: want nats 2.10 or newer (subject transforms with partition())", name, image)
		}
		args := strList(t, name+" command", svc["command"])
		for flag, want := range map[string]string{"--name": name, "--cluster_name": "callreport", "--store_dir": "/data",
			"--cluster": "nats://0.0.0.0:6222"} {
			if got := argOf(args, flag); got != want {
				t.Errorf("%s: %s %q, want %q", name, flag, got, want)
			}
		}
		if !slices.Contains(args, "--jetstream") {
			t.Errorf("%s: no --jetstream", name)
		}
		var routes []string
		for j := 1; j <= 3; j++ {
			if j != i {
				routes = append(routes, fmt.Sprintf("nats://nats-%d:6222", j))
			}
		}
		if got := argOf(args, "--routes"); got != strings.Join(routes, ",") {
			t.Errorf("%s: routes %q, want %q", name, got, strings.Join(routes, ","))
		}
		vols := strList(t, name+" volumes", svc["volumes"])
		if len(vols) != 1 || vols[0] != name+":/data" {
			t.Errorf("%s: volumes %v, want its store on volume %s", name, vols, name)
		}
		if _, ok := volumes[name]; !ok {
			t.Errorf("volume %s is not declared", name)
		}
		urls = append(urls, fmt.Sprintf("nats://%s:4222", name))
	}

	// The processes: the image, the settings, the order.
	for name, want := range map[string]struct {
		command  string
		replicas string
	}{"migrate": {"reportctl migrate", ""}, "projector": {"projector", "3"}, "query": {"query", "2"}} {
		svc := obj(t, name, services[name])
		build := mapping(t, name+" build", svc["build"], "context", "dockerfile")
		if str(t, name+" build context", build["context"]) != "../.." || str(t, name+" dockerfile", build["dockerfile"]) != "deploy/Dockerfile" {
			t.Errorf("%s: build %v, want the repository with deploy/Dockerfile", name, build)
		}
		if got := strings.Join(strList(t, name+" command", svc["command"]), " "); got != want.command {
			t.Errorf("%s: command %q, want %q", name, got, want.command)
		}
		if want.replicas != "" {
			if got := str(t, name+" replicas", obj(t, name+" deploy", svc["deploy"])["replicas"]); got != want.replicas {
				t.Errorf("%s: %s replicas, want %s", name, got, want.replicas)
			}
			dep := obj(t, name+" depends_on", svc["depends_on"])
			if c := obj(t, name+" depends_on migrate", dep["migrate"])["condition"]; c != "service_completed_successfully" {
				t.Errorf("%s: starts on migrate %v, want once it completed", name, c)
			}
		}
		env := stringMap(t, name+" environment", svc["environment"])
		for k := range env {
			if !known[k] {
				t.Errorf("%s: %s is no setting of the binaries", name, k)
			}
		}
		if got := env["NATS_URL"]; got != strings.Join(urls, ",") {
			t.Errorf("%s: NATS_URL %q, want every server: %q", name, got, strings.Join(urls, ","))
		}
		if env["CALLREPORT_PARTITIONS"] == "" || env["CALLREPORT_STREAM_REPLICAS"] != "3" {
			t.Errorf("%s: partitions %q, replicas %q: want them set, three replicas", name, env["CALLREPORT_PARTITIONS"], env["CALLREPORT_STREAM_REPLICAS"])
		}
		fs := flag.NewFlagSet(name, flag.ContinueOnError)
		for k, v := range env {
			t.Setenv(k, v)
		}
		got := config.Register(fs, config.SectionAll)
		if err := got.Validate(); err != nil {
			t.Errorf("%s: the environment does not validate: %v", name, err)
		}
		if name == "query" {
			if got.HTTP.Addr != "0.0.0.0:8080" {
				t.Errorf("query: HTTP_ADDR %s, want 0.0.0.0:8080, where nginx.conf sends", got.HTTP.Addr)
			}
			if len(got.HTTP.TrustedProxies) == 0 {
				t.Error("query: no HTTP_TRUSTED_PROXIES: the load balancer's X-Forwarded-For would not count")
			}
		}
	}
	pg := obj(t, "postgres", services["postgres"])
	if !strings.HasPrefix(str(t, "postgres image", pg["image"]), "postgres:") {
		t.Errorf("postgres: image %v", pg["image"])
	}

	// One port in front of the query processes.
	lb := obj(t, "lb", services["lb"])
	if ports := strList(t, "lb ports", lb["ports"]); len(ports) != 1 || ports[0] != "8080:8080" {
		t.Errorf("lb: ports %v, want 8080:8080", ports)
	}
	conf, err := os.ReadFile(nginxFile)
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"server query:8080;", "listen 8080;", "proxy_pass http://query;", "proxy_buffering off;"} {
		if !strings.Contains(string(conf), want) {
			t.Errorf("%s: no %q", nginxFile, want)
		}
	}

	// The image builds the three commands.
	df, err := os.ReadFile(dockerFile)
	if err != nil {
		t.Fatal(err)
	}
	for _, cmd := range []string{"projector", "query", "reportctl"} {
		if !strings.Contains(string(df), "./cmd/"+cmd) {
			t.Errorf("%s does not build cmd/%s", dockerFile, cmd)
		}
		if _, err := os.Stat("../cmd/" + cmd); err != nil {
			t.Errorf("cmd/%s: %v", cmd, err)
		}
	}
	if m := regexp.MustCompile(`FROM golang:(\d+)\.(\d+)`).FindStringSubmatch(string(df)); m == nil || !goVersionOK(t, m[1], m[2]) {
		t.Errorf("%s: the build image's Go is older than go.mod's", dockerFile)
	}
}

// envNames are the environment variables the binaries read.
func envNames(t *testing.T) map[string]bool {
	t.Helper()
	fs := flag.NewFlagSet("env", flag.ContinueOnError)
	config.Register(fs, config.SectionAll)
	names := map[string]bool{}
	fs.VisitAll(func(f *flag.Flag) {
		for _, m := range regexp.MustCompile(`\(env ([A-Z0-9_]+)\)`).FindAllStringSubmatch(f.Usage, -1) {
			names[m[1]] = true
		}
	})
	if len(names) < 10 {
		t.Fatalf("only %d environment variables found in the flags' help", len(names))
	}
	return names
}

func strList(t *testing.T, where string, v any) []string {
	t.Helper()
	var out []string
	for _, x := range list(t, where, v) {
		out = append(out, str(t, where, x))
	}
	return out
}

// argOf is the value after flag in args.
func argOf(args []string, flag string) string {
	if i := slices.Index(args, flag); i >= 0 && i+1 < len(args) {
		return args[i+1]
	}
	return ""
}

func atLeast(major, minor string, wantMajor, wantMinor int) bool {
	ma, _ := strconv.Atoi(major)
	mi, _ := strconv.Atoi(minor)
	return ma > wantMajor || ma == wantMajor && mi >= wantMinor
}

// goVersionOK reports whether Go major.minor is at least go.mod's.
func goVersionOK(t *testing.T, major, minor string) bool {
	t.Helper()
	mod, err := os.ReadFile("../go.mod")
	if err != nil {
		t.Fatal(err)
	}
	m := regexp.MustCompile(`(?m)^go (\d+)\.(\d+)`).FindStringSubmatch(string(mod))
	if m == nil {
		t.Fatal("go.mod: no go line")
	}
	wma, _ := strconv.Atoi(m[1])
	wmi, _ := strconv.Atoi(m[2])
	return atLeast(major, minor, wma, wmi)
}

// obj asserts that v is a mapping, whatever its keys.
func obj(t *testing.T, where string, v any) map[string]any {
	t.Helper()
	m, ok := v.(map[string]any)
	if !ok {
		t.Fatalf("%s: %T, want a mapping", where, v)
	}
	return m
}
