package testport

import "testing"

func TestFreeNeverRepeats(t *testing.T) {
	seen := map[int]bool{}
	for range 200 {
		p := Free(t)
		if p < low || p >= high || seen[p] {
			t.Fatalf("port %d repeated or out of range", p)
		}
		seen[p] = true
	}
}
