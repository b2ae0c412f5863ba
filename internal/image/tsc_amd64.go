package image

import (
	"errors"
	"time"
)

// rdtsc reads the CPU's time-stamp counter.
func rdtsc() uint64

// tscSample is how long one measurement of the TSC frequency takes.
const tscSample = 50 * time.Millisecond

// maxBracketCycles bounds the cycles between the two TSC reads around a
// clock reading (about 25 µs at 2 GHz): a wider bracket means the thread was
// preempted there, and the reading is taken again.
const maxBracketCycles = 50_000

// measureTSCKHz measures the TSC's frequency against the monotonic clock:
// two samples that agree within 0.5%, at most five tries.
func measureTSCKHz() (uint64, error) {
	var prev float64
	for range 5 {
		khz, err := sampleTSCKHz()
		if err != nil {
			return 0, err
		}
		if prev > 0 && khz > prev*0.995 && khz < prev*1.005 {
			return uint64((khz + prev) / 2), nil
		}
		prev = khz
	}
	return 0, errors.New("measure the TSC frequency: samples disagree (a busy or throttled host?)")
}

func sampleTSCKHz() (float64, error) {
	c0, t0, err := tscAndTime()
	if err != nil {
		return 0, err
	}
	time.Sleep(tscSample)
	c1, t1, err := tscAndTime()
	if err != nil {
		return 0, err
	}
	if c1 <= c0 {
		return 0, errors.New("measure the TSC frequency: the TSC did not advance")
	}
	return float64(c1-c0) / (float64(t1.Sub(t0)) / float64(time.Millisecond)), nil
}

// tscAndTime reads the TSC and the clock at about the same moment.
func tscAndTime() (uint64, time.Time, error) {
	for range 100 {
		a := rdtsc()
		t := time.Now()
		b := rdtsc()
		if b >= a && b-a < maxBracketCycles {
			return a + (b-a)/2, t, nil
		}
	}
	return 0, time.Time{}, errors.New("measure the TSC frequency: cannot read the TSC and the clock together")
}
