package testdataplane

import (
	"math/rand/v2"
	"sync/atomic"
)

func randIntn(n int) int { return rand.IntN(n) }

// choose picks a host for one try the way Envoy's ROUND_ROBIN load balancer
// does with priorities and (optionally) locality weights:
//
//  1. Each priority's health is min(100, 1.4 × healthy/total) percent
//     (overprovisioning factor 140). Hosts ejected by outlier detection are
//     unhealthy. Priorities in excluded (previous_priorities) count as 0.
//  2. Load goes to priorities in order, each taking its health share of the
//     normalised total; when nothing is healthy, all load goes to P0 in panic
//     mode.
//  3. Within the chosen priority, below 50 % healthy (the panic threshold)
//     every host is a candidate; otherwise only healthy ones.
//  4. With locality_weighted_lb_config a locality is drawn by weight ×
//     availability, then a host in it; without it, a host of the priority.
//
// Envoy's locality and host picks use EDF schedulers, which are
// deterministic; weighted random picks give the same shares.
func (c *cluster) choose(excluded map[int]bool) *host {
	n := len(c.byPriority)
	if n == 0 {
		return nil
	}
	health := c.healthySnapshot()
	hp := make([]int, n)
	for p, locs := range c.byPriority {
		total, healthy := countHosts(locs, health)
		if total > 0 {
			hp[p] = min(100, overprovisioningFactor*healthy/total)
		}
	}
	load := priorityLoad(hp, excluded)
	r := randIntn(100)
	p := 0
	for i, l := range load {
		if r < l {
			p = i
			break
		}
		r -= l
	}
	locs := c.byPriority[p]
	total, healthy := countHosts(locs, health)
	if total == 0 {
		return nil
	}
	panicMode := healthy*100 < defaultPanicThresholdPerc*total
	usable := func(h *host) bool { return panicMode || health[h] }

	if c.cfg.localityWeighted {
		weights := make([]int, len(locs))
		sum := 0
		for i, l := range locs {
			lt, lh := len(l.hosts), 0
			for _, h := range l.hosts {
				if health[h] {
					lh++
				}
			}
			w := int(l.cfg.weight)
			if !panicMode && lt > 0 {
				// Availability scales the weight down when a locality's
				// hosts are unhealthy (capped at 100 %).
				w = w * min(100, overprovisioningFactor*lh/lt) / 100
			}
			weights[i] = w
			sum += w
		}
		if sum == 0 {
			return nil
		}
		x := randIntn(sum)
		for i, w := range weights {
			if x < w {
				return pickHost(locs[i], locs[i].hosts, usable)
			}
			x -= w
		}
		return nil
	}
	var all []*host
	for _, l := range locs {
		all = append(all, l.hosts...)
	}
	return pickHost(locs[0], all, usable)
}

func countHosts(locs []*locality, health map[*host]bool) (total, healthy int) {
	for _, l := range locs {
		for _, h := range l.hosts {
			total++
			if health[h] {
				healthy++
			}
		}
	}
	return total, healthy
}

// priorityLoad is Envoy's per-priority load in percent, after
// previous_priorities set excluded priorities' health to 0 (and restored
// them all when that leaves nothing).
func priorityLoad(health []int, excluded map[int]bool) []int {
	eff := make([]int, len(health))
	sum := 0
	for p, h := range health {
		if !excluded[p] {
			eff[p] = h
			sum += h
		}
	}
	if sum == 0 && len(excluded) > 0 {
		copy(eff, health)
		sum = 0
		for _, h := range eff {
			sum += h
		}
	}
	load := make([]int, len(health))
	total := min(100, sum)
	if total == 0 {
		load[0] = 100
		return load
	}
	remaining := 100
	for p, h := range eff {
		load[p] = min(remaining, h*100/total)
		remaining -= load[p]
	}
	for p := range load {
		if remaining == 0 {
			break
		}
		if eff[p] > 0 {
			load[p] += remaining
			remaining = 0
		}
	}
	return load
}

// pickHost draws among the usable hosts by endpoint weight; equal weights
// go round robin.
func pickHost(l *locality, hosts []*host, usable func(*host) bool) *host {
	var cand []*host
	equal := true
	for _, h := range hosts {
		if usable(h) {
			if len(cand) > 0 && h.cfg.weight != cand[0].cfg.weight {
				equal = false
			}
			cand = append(cand, h)
		}
	}
	switch {
	case len(cand) == 0:
		return nil
	case equal:
		return cand[int(next(&l.rr)%uint64(len(cand)))]
	}
	sum := 0
	for _, h := range cand {
		sum += int(h.cfg.weight)
	}
	if sum == 0 {
		return cand[0]
	}
	x := randIntn(sum)
	for _, h := range cand {
		if x < int(h.cfg.weight) {
			return h
		}
		x -= int(h.cfg.weight)
	}
	return cand[len(cand)-1]
}

func next(c *atomic.Uint64) uint64 { return c.Add(1) - 1 }
