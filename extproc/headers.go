package extproc

import (
	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	extprocv3 "github.com/envoyproxy/go-control-plane/envoy/service/ext_proc/v3"
	"google.golang.org/protobuf/types/known/structpb"
)

// header returns the first value of name (lower case) in hm. Envoy sends
// values in raw_value; value is read too for older Envoys.
func header(hm *corev3.HeaderMap, name string) string {
	for _, h := range hm.GetHeaders() {
		if h.GetKey() == name {
			if raw := h.GetRawValue(); len(raw) > 0 {
				return string(raw)
			}
			return h.GetValue()
		}
	}
	return ""
}

// attribute returns the value of a CEL attribute Envoy sent with req, as a
// string. Envoy (since 1.29) sends them on the request message; the older
// place on the headers message is not read.
func attribute(req *extprocv3.ProcessingRequest, name string) (string, bool) {
	v, ok := req.GetAttributes()["envoy.filters.http.ext_proc"].GetFields()[name]
	if !ok {
		return "", false
	}
	if s, isString := v.GetKind().(*structpb.Value_StringValue); isString {
		return s.StringValue, true
	}
	return v.String(), true
}
