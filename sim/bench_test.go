package sim

import (
	"math/rand/v2"
	"testing"
	"time"
)

// BenchmarkSimSpeed reports simulated seconds per wall second for a 5-node
// cluster with faults (1% loss, duplication, reordering, clock drift):
// idle, and under about 50 client operations per virtual second. Election
// jitter is not made deterministic here (that needs a *testing.T); speed
// does not depend on it.
func BenchmarkSimSpeed(b *testing.B) {
	for _, tc := range []struct {
		name      string
		opsPerSec int
	}{
		{"idle", 0},
		{"load-50ops", 50},
	} {
		b.Run(tc.name, func(b *testing.B) {
			const virtualPerRun = 20 * time.Second
			var virtual, wall time.Duration
			var ops int
			for i := 0; i < b.N; i++ {
				// Opening five stores costs about 20 ms; only running counts.
				w, err := New(uint64(i+1), Options{
					Nodes: 5, LossRate: 0.01, DuplicateRate: 0.01, ReorderRate: 0.01, ClockDrift: true,
				})
				if err != nil {
					b.Fatal(err)
				}
				if tc.opsPerSec > 0 {
					wl := NewWorkload(rand.New(rand.NewPCG(uint64(i), 7)), 8)
					var clients []*Client
					for c := 0; c < 10; c++ {
						clients = append(clients, w.NewClient(ClientOptions{}))
					}
					interval := time.Second / time.Duration(tc.opsPerSec)
					var feed func()
					next := 0
					feed = func() {
						clients[next%len(clients)].Do(wl.Next())
						next++
						ops++
						w.at(w.now+interval, feed)
					}
					w.at(2*time.Second, feed)
				}
				start := time.Now()
				if err := w.RunFor(virtualPerRun); err != nil {
					b.Fatal(w.Failure(err))
				}
				wall += time.Since(start)
				virtual += w.Now()
				w.Close()
			}
			b.ReportMetric(virtual.Seconds()/wall.Seconds(), "virtual-s/wall-s")
			if ops > 0 {
				b.ReportMetric(float64(ops)/virtual.Seconds(), "ops/virtual-s")
			}
		})
	}
}
