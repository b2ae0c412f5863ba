// Package hostinfo reads what the benchmark commands under bench/ report
// about the machine they ran on: the CPU model and the load average.
package hostinfo
