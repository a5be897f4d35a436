package extproc

import (
	"fmt"
	"strings"
	"testing"

	configv1 "github.com/tollgate-dev/tollgate/api/tollgate/config/v1"
)

// BenchmarkContentCapture is BenchmarkStreamingRequest200Chunks with the
// tenant's content retention none and full: compare the two in one run for
// the cost of capturing the request and the streamed response.
func BenchmarkContentCapture(b *testing.B) {
	body := strings.Replace(chatBody, `"model":"smart"`, `"model":"smart","stream":true`, 1)
	chunks := streamChunks()
	for _, r := range []configv1.ContentRetention{configv1.ContentRetention_CONTENT_RETENTION_NONE, configv1.ContentRetention_CONTENT_RETENTION_FULL} {
		b.Run("retention="+strings.ToLower(strings.TrimPrefix(r.String(), "CONTENT_RETENTION_")), func(b *testing.B) {
			f := benchFixture(b)
			f.cfg.tenants[tenantID].Policy = &configv1.Policy{ContentRetention: r, ContentRetentionDays: 7}
			b.ReportAllocs()
			i := 0
			for b.Loop() {
				i++
				benchRequest(b, f, fmt.Sprint("r", i), body, "text/event-stream", chunks)
			}
		})
	}
}
