package usage

import (
	"google.golang.org/protobuf/proto"

	usagev1 "github.com/tollgate-dev/tollgate/api/tollgate/usage/v1"
)

// Request content (records of tenants whose policy keeps it) is delivered
// from memory only, never through the spill directory. The spill lives on
// the ext_proc node, outside the control plane's encryption, and outside
// the reach of a tenant's erasure: a body written there could outlive the
// promise that it is kept only encrypted and only for N days. So a record
// that goes to the spill loses its content (content_lost, counted in
// Stats().ContentLost), while its usage is delivered as always. Memory for
// content is bounded too (MaxContentBytes queued, maxBatchContentBytes per
// batch), and content beyond the bound is dropped the same way.

// maxBatchContentBytes bounds the content in one batch, well below the
// control plane's 16 MiB message limit, so that a batch of large bodies can
// always be delivered.
const maxBatchContentBytes = 8 << 20

func contentSize(rec *usagev1.UsageRecord) int {
	c := rec.GetContent()
	if c == nil {
		return 0
	}
	return len(c.GetRequestBody()) + len(c.GetResponseBody())
}

// dropContent removes a record's content and says so on the record. Only
// for records nobody else holds.
func (r *Recorder) dropContent(rec *usagev1.UsageRecord) {
	if rec.GetContent() == nil {
		return
	}
	rec.Content, rec.ContentLost = nil, true
	r.contentLost.Add(1)
}

// withoutContent returns recs for the spill: records carrying content are
// copied without it (the originals may be on their way to the stream).
func (r *Recorder) withoutContent(recs []*usagev1.UsageRecord) []*usagev1.UsageRecord {
	var out []*usagev1.UsageRecord
	for i, rec := range recs {
		if rec.GetContent() == nil {
			continue
		}
		if out == nil {
			out = append([]*usagev1.UsageRecord(nil), recs...)
		}
		c := &usagev1.UsageRecord{}
		proto.Merge(c, rec)
		r.dropContent(c)
		out[i] = c
	}
	if out == nil {
		return recs
	}
	return out
}

// limitBatchContent drops content past maxBatchContentBytes in a batch that
// is about to be sent.
func (r *Recorder) limitBatchContent(recs []*usagev1.UsageRecord) {
	total := 0
	for _, rec := range recs {
		n := contentSize(rec)
		if n == 0 {
			continue
		}
		if total+n > maxBatchContentBytes {
			r.dropContent(rec)
			continue
		}
		total += n
	}
}

// queuedContent is the content held by records in the queue. r.mu is held.
func queuedContent(recs []*usagev1.UsageRecord) int {
	n := 0
	for _, rec := range recs {
		n += contentSize(rec)
	}
	return n
}
