// Package metrics holds a node's Prometheus metrics: their names and
// meanings in one place, the gRPC interceptors that count API requests,
// and the HTTP handler that serves them on --metrics-listen. Names follow
// Prometheus conventions: a blixard_ prefix, units in the name, _total on
// counters. The runtime feeds the Raft and store metrics from its loop,
// and the workload and capacity gauges are read from the node's state at
// each scrape (Stats).
package metrics
