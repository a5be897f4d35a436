//go:build !unix

package loadtest

import "time"

func cpuTime() (time.Duration, bool) { return 0, false }
