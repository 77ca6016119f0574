package main

import (
	"math"
	"math/bits"
	"time"
)

// subBits sets the histogram's resolution: every power of two is split into
// 2^subBits linear sub-buckets, so a recorded value is known to within
// 1/2^subBits (under 0.8%) of itself. Values below 2^subBits nanoseconds are
// exact.
const (
	subBits  = 7
	subCount = 1 << subBits
	nBuckets = (64 - subBits + 1) * subCount // shifts 0..56, plus the exact range
)

// Histogram is a log-linear latency histogram (HdrHistogram's layout, in
// miniature): fixed size, no allocation per sample, mergeable. One per
// connection, merged at the end, so recording needs no lock.
type Histogram struct {
	counts [nBuckets]uint64
	total  uint64
	min    uint64
	max    uint64
	sum    float64
}

// bucketOf returns the bucket index of v (in nanoseconds).
func bucketOf(v uint64) int {
	if v < subCount {
		return int(v)
	}
	shift := bits.Len64(v) - subBits - 1 // keep the top subBits+1 bits
	return (shift+1)*subCount + int(v>>uint(shift)) - subCount
}

// bucketRange returns the smallest and largest value that fall in bucket i.
func bucketRange(i int) (lo, hi uint64) {
	if i < subCount {
		return uint64(i), uint64(i)
	}
	shift := uint(i/subCount - 1)
	m := uint64(i%subCount + subCount)
	lo = m << shift
	hi = lo + (uint64(1) << shift) - 1
	return lo, hi
}

// Record adds one sample.
func (h *Histogram) Record(d time.Duration) {
	v := uint64(0)
	if d > 0 {
		v = uint64(d)
	}
	h.counts[bucketOf(v)]++
	if h.total == 0 || v < h.min {
		h.min = v
	}
	if v > h.max {
		h.max = v
	}
	h.total++
	h.sum += float64(v)
}

// Merge adds every sample of o to h.
func (h *Histogram) Merge(o *Histogram) {
	if o.total == 0 {
		return
	}
	for i, c := range o.counts {
		h.counts[i] += c
	}
	if h.total == 0 || o.min < h.min {
		h.min = o.min
	}
	if o.max > h.max {
		h.max = o.max
	}
	h.total += o.total
	h.sum += o.sum
}

// Count is the number of samples.
func (h *Histogram) Count() uint64 { return h.total }

// Max is the largest sample.
func (h *Histogram) Max() time.Duration { return time.Duration(h.max) }

// Mean is the average sample.
func (h *Histogram) Mean() time.Duration {
	if h.total == 0 {
		return 0
	}
	return time.Duration(h.sum / float64(h.total))
}

// Quantile returns the value at quantile q (0 < q <= 1) by the nearest-rank
// method: the smallest sample such that at least q of all samples are at or
// below it, reported as the middle of its bucket (clamped to the observed
// min and max), so the error is at most half a bucket.
func (h *Histogram) Quantile(q float64) time.Duration {
	if h.total == 0 {
		return 0
	}
	rank := uint64(math.Ceil(q * float64(h.total)))
	if rank < 1 {
		rank = 1
	}
	if rank > h.total {
		rank = h.total
	}
	var seen uint64
	for i, c := range h.counts {
		seen += c
		if seen >= rank {
			lo, hi := bucketRange(i)
			v := lo + (hi-lo)/2
			if v < h.min {
				v = h.min
			}
			if v > h.max {
				v = h.max
			}
			return time.Duration(v)
		}
	}
	return time.Duration(h.max)
}
