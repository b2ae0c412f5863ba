package runtime

import (
	"context"
	"net/http"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"

	apiv1 "github.com/blixard/blixard/api/v1"
	"github.com/blixard/blixard/api/v1/apiv1grpc"
)

// scrape reads the node's /metrics and parses it with the Prometheus text
// parser: a format error fails the test.
func scrape(t *testing.T, addr string) map[string]*dto.MetricFamily {
	t.Helper()
	resp, err := http.Get("http://" + addr + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("GET /metrics: %s", resp.Status)
	}
	parser := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := parser.TextToMetricFamilies(resp.Body)
	if err != nil {
		t.Fatalf("the metrics do not parse: %v", err)
	}
	return fams
}

// requests sums blixard_api_requests_total for method over every code.
func requests(fams map[string]*dto.MetricFamily, method string) float64 {
	var sum float64
	for _, m := range fams["blixard_api_requests_total"].GetMetric() {
		for _, l := range m.GetLabel() {
			if l.GetName() == "method" && l.GetValue() == method {
				sum += m.GetCounter().GetValue()
			}
		}
	}
	return sum
}

// counter is the value of the unlabelled counter name; 0 when absent.
func counter(fams map[string]*dto.MetricFamily, name string) float64 {
	if ms := fams[name].GetMetric(); len(ms) > 0 {
		return ms[0].GetCounter().GetValue()
	}
	return 0
}

// TestMetrics: a node with --metrics-listen serves metrics that parse,
// with the Raft, workload and capacity families; one CreateVm raises the
// request counter of that method by exactly one and the committed
// proposals by at least one (the node leads: it proposed the write); the
// bootstrap snapshot's size is observed.
func TestMetrics(t *testing.T) {
	n, conn, stop := startNodeWith(t, t.TempDir(), func(c *Config) { c.MetricsListen = "127.0.0.1:0" })
	defer stop()
	addr := n.MetricsAddr()
	if addr == "" {
		t.Fatal("no metrics address")
	}
	const method = "/blixard.v1.VmService/CreateVm"
	fams := scrape(t, addr)
	before := requests(fams, method)
	committedBefore := counter(fams, "blixard_raft_proposals_committed_total")
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	_, _ = apiv1grpc.NewVmServiceClient(conn).CreateVm(ctx, &apiv1.CreateVmRequest{
		ClientRequestId: "metrics-1", Name: "m1", Spec: &apiv1.VmSpec{Vcpus: 1, MemoryMib: 128}})
	fams = scrape(t, addr)
	if got := requests(fams, method); got != before+1 {
		t.Fatalf("%s requests: %v before one CreateVm, %v after; want one more", method, before, got)
	}
	for _, name := range []string{
		"blixard_raft_term", "blixard_raft_commit_index", "blixard_raft_applied_index", "blixard_raft_is_leader",
		"blixard_raft_leader_changes_total", "blixard_raft_ready_entries", "blixard_store_save_seconds",
		"blixard_api_request_duration_seconds", "blixard_node_capacity", "blixard_node_allocated", "go_goroutines",
		"blixard_raft_proposals_committed_total", "blixard_raft_proposals_dropped_total", "blixard_raft_snapshot_bytes",
		"blixard_placement_seconds", "blixard_reschedules_total", "blixard_placement_tries_total", "blixard_placement_blocked",
	} {
		if fams[name] == nil {
			t.Errorf("no metric %s", name)
		}
	}
	if v := fams["blixard_raft_is_leader"].GetMetric()[0].GetGauge().GetValue(); v != 1 {
		t.Errorf("blixard_raft_is_leader = %v on a one-node cluster, want 1", v)
	}
	if got := counter(fams, "blixard_raft_proposals_committed_total"); got < committedBefore+1 {
		t.Errorf("blixard_raft_proposals_committed_total: %v before one CreateVm, %v after; want at least one more", committedBefore, got)
	}
	if h := fams["blixard_raft_snapshot_bytes"].GetMetric(); len(h) != 1 || h[0].GetHistogram().GetSampleCount() < 1 || h[0].GetHistogram().GetSampleSum() <= 0 {
		t.Errorf("blixard_raft_snapshot_bytes = %v, want the bootstrap snapshot's size observed", h)
	}
	kinds := map[string]bool{}
	for _, m := range fams["blixard_reschedules_total"].GetMetric() {
		for _, l := range m.GetLabel() {
			if l.GetName() == "kind" {
				kinds[l.GetValue()] = true
			}
		}
	}
	if !kinds["vm"] || !kinds["task"] {
		t.Errorf("blixard_reschedules_total has kinds %v, want vm and task", kinds)
	}
	if code := httpStatus(t, "http://"+addr+"/debug/pprof/cmdline"); code != http.StatusNotFound {
		t.Errorf("GET /debug/pprof/cmdline without --pprof: %d, want 404", code)
	}
}

// httpStatus returns the status code of a GET of url.
func httpStatus(t *testing.T, url string) int {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	return resp.StatusCode
}

// TestMetricsPprof: --pprof adds Go's profiles beside the metrics, and
// only on a loopback metrics listener.
func TestMetricsPprof(t *testing.T) {
	for _, c := range []struct {
		name, listen, wantErr string
	}{
		{"loopback", "127.0.0.1:9001", ""},
		{"no metrics listener", "", "--pprof"},
		{"anywhere", "0.0.0.0:9001", "--pprof"},
	} {
		cfg := Config{ID: 1, DataDir: t.TempDir(), Listen: "127.0.0.1:7001", MetricsListen: c.listen, Pprof: true}
		_, err := cfg.withDefaults()
		checkConfigErr(t, c.name, err, c.wantErr)
	}
	n, _, stop := startNodeWith(t, t.TempDir(), func(c *Config) { c.MetricsListen, c.Pprof = "127.0.0.1:0", true })
	defer stop()
	for _, path := range []string{"/debug/pprof/", "/debug/pprof/cmdline", "/debug/pprof/goroutine?debug=1", "/metrics"} {
		if code := httpStatus(t, "http://"+n.MetricsAddr()+path); code != http.StatusOK {
			t.Errorf("GET %s with --pprof: %d, want 200", path, code)
		}
	}
}
