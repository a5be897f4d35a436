package telemetry

import (
	"fmt"
	"io"
	"sort"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
)

// Families are metric families as a Prometheus scrape sees them. Tests use
// them to read what a process exposes; so does the dashboard check.
type Families []*dto.MetricFamily

// ParseExposition reads a scrape in the Prometheus text format.
func ParseExposition(r io.Reader) (Families, error) {
	p := expfmt.NewTextParser(model.UTF8Validation)
	m, err := p.TextToMetricFamilies(r)
	if err != nil {
		return nil, fmt.Errorf("telemetry: parsing the exposition: %w", err)
	}
	out := make(Families, 0, len(m))
	for _, mf := range m {
		out = append(out, mf)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].GetName() < out[j].GetName() })
	return out, nil
}

// Family returns the family called name, or nil.
func (fs Families) Family(name string) *dto.MetricFamily {
	for _, f := range fs {
		if f.GetName() == name {
			return f
		}
	}
	return nil
}

// SeriesNames are the names of the series a query can select: a family's
// name, and for histograms and summaries also its _bucket, _sum and _count
// series.
func (fs Families) SeriesNames() map[string]bool {
	out := map[string]bool{}
	for _, f := range fs {
		n := f.GetName()
		out[n] = true
		switch f.GetType() {
		case dto.MetricType_HISTOGRAM, dto.MetricType_GAUGE_HISTOGRAM:
			out[n+"_bucket"], out[n+"_sum"], out[n+"_count"] = true, true, true
		case dto.MetricType_SUMMARY:
			out[n+"_sum"], out[n+"_count"] = true, true
		}
	}
	return out
}

// Sum adds up the values of family name's series whose labels include
// every pair in labels (name, value, name, value, ...): counters and gauges
// by value, histograms and summaries by their count of observations. ok is
// false when no series matched.
func (fs Families) Sum(name string, labels ...string) (sum float64, ok bool) {
	f := fs.Family(name)
	if f == nil {
		return 0, false
	}
	for _, m := range f.GetMetric() {
		if !hasLabels(m, labels) {
			continue
		}
		ok = true
		switch {
		case m.GetCounter() != nil:
			sum += m.GetCounter().GetValue()
		case m.GetGauge() != nil:
			sum += m.GetGauge().GetValue()
		case m.GetHistogram() != nil:
			sum += float64(m.GetHistogram().GetSampleCount())
		case m.GetSummary() != nil:
			sum += float64(m.GetSummary().GetSampleCount())
		case m.GetUntyped() != nil:
			sum += m.GetUntyped().GetValue()
		}
	}
	return sum, ok
}

// HistogramSum adds up the sums of the observations of histogram name's
// series whose labels include labels (as for Sum).
func (fs Families) HistogramSum(name string, labels ...string) (sum float64, ok bool) {
	f := fs.Family(name)
	if f == nil {
		return 0, false
	}
	for _, m := range f.GetMetric() {
		if h := m.GetHistogram(); h != nil && hasLabels(m, labels) {
			sum += h.GetSampleSum()
			ok = true
		}
	}
	return sum, ok
}

// LabelValues returns the values label takes in family name's series.
func (fs Families) LabelValues(name, label string) []string {
	f := fs.Family(name)
	seen := map[string]bool{}
	var out []string
	for _, m := range f.GetMetric() {
		for _, l := range m.GetLabel() {
			if l.GetName() == label && !seen[l.GetValue()] {
				seen[l.GetValue()] = true
				out = append(out, l.GetValue())
			}
		}
	}
	sort.Strings(out)
	return out
}

func hasLabels(m *dto.Metric, labels []string) bool {
	for i := 0; i+1 < len(labels); i += 2 {
		found := false
		for _, l := range m.GetLabel() {
			if l.GetName() == labels[i] && l.GetValue() == labels[i+1] {
				found = true
				break
			}
		}
		if !found {
			return false
		}
	}
	return true
}
