package usage

import (
	"bytes"
	"os"
	"strings"
	"testing"
	"time"

	usagev1 "github.com/tollgate-dev/tollgate/api/tollgate/usage/v1"
	"github.com/tollgate-dev/tollgate/controlplane/store/storetest"
)

func recWithContent(i int, body string) *usagev1.UsageRecord {
	r := rec(i)
	r.Content = &usagev1.Content{RequestBody: []byte(body), ResponseBody: []byte("reply: " + body)}
	return r
}

// Content never reaches the spill directory: spilled records lose it, say
// so, and keep their usage.
func TestSpilledRecordsCarryNoContent(t *testing.T) {
	cp := newControlPlane(t, storetest.SQLite(t))
	dir := t.TempDir()
	r, _ := newRecorder(t, testConfig(dial(t, cp.addr), dir))
	const marker = "spill-marker-5f1c"
	for i := range 250 {
		r.Record(recWithContent(i, marker))
	}
	waitFor(t, "every record is spilled", func() bool { return r.Stats().Spilled == 250 })
	for _, seg := range segments(t, dir) {
		b, err := os.ReadFile(seg)
		if err != nil {
			t.Fatal(err)
		}
		if bytes.Contains(b, []byte(marker)) {
			t.Fatalf("%s holds request content", seg)
		}
	}
	if s := r.Stats(); s.ContentLost != 250 {
		t.Errorf("ContentLost = %d, want 250", s.ContentLost)
	}
	cp.start()
	waitFor(t, "the spilled usage reaches the store", func() bool { return cp.stored() == 250 })
	closeRecorder(t, r, 5*time.Second)
}

func TestContentIsBoundedInMemoryAndPerBatch(t *testing.T) {
	cp := newControlPlane(t, storetest.SQLite(t))
	cfg := testConfig(dial(t, cp.addr), t.TempDir())
	cfg.MaxContentBytes = 1000
	r, _ := newRecorder(t, cfg)
	body := strings.Repeat("x", 300) // 300 + 307 bytes a record
	first, second := recWithContent(1, body), recWithContent(2, body)
	r.Record(first)
	r.Record(second)
	r.mu.Lock()
	kept, lost := first.GetContent() != nil, second.GetContentLost()
	r.mu.Unlock()
	if !kept || !lost {
		t.Errorf("first kept %v, second lost %v: want the second over the 1,000-byte bound dropped", kept, lost)
	}

	big := strings.Repeat("y", maxBatchContentBytes/4) // a record: just over half the bound
	batch := []*usagev1.UsageRecord{recWithContent(1, big), recWithContent(2, big), recWithContent(3, "small")}
	r.limitBatchContent(batch)
	if batch[0].GetContent() == nil || batch[1].GetContent() != nil || !batch[1].GetContentLost() || batch[2].GetContent() == nil {
		t.Errorf("batch content after the limit: %v %v %v", batch[0].GetContent() != nil, batch[1].GetContent() != nil, batch[2].GetContent() != nil)
	}
}
