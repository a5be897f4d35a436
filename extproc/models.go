package extproc

import (
	"encoding/json"
	"net/http"
	"sort"

	configv1 "github.com/tollgate-dev/tollgate/api/tollgate/config/v1"
	"github.com/tollgate-dev/tollgate/extproc/translate"
)

// openAIModel is one entry of OpenAI's GET /v1/models.
type openAIModel struct {
	ID      string `json:"id"`
	Object  string `json:"object"`
	Created int64  `json:"created"`
	OwnedBy string `json:"owned_by"`
}

// anthropicModel is one entry of Anthropic's GET /v1/models.
type anthropicModel struct {
	Type        string `json:"type"`
	ID          string `json:"id"`
	DisplayName string `json:"display_name"`
	CreatedAt   string `json:"created_at"`
}

// usableModels lists the models a key may use, by name: allowed by its
// lists, and served by a deployment its privacy requirements permit.
func usableModels(cfg Config, key *configv1.Key, tenant *configv1.Tenant) []string {
	var names []string
	q := privacyRequirement(tenant, key)
	for _, m := range cfg.Models(tenant.GetTenantId()) {
		if _, _, e := privacyRoute(m, q); e != nil && e.Status == http.StatusForbidden {
			continue
		}
		if modelAllowed(key, tenant, m.GetName()) == nil {
			names = append(names, m.GetName())
		}
	}
	sort.Strings(names)
	return names
}

// listModels answers GET /v1/models in the shape of the client's SDK
// (Anthropic's when it sent anthropic-version).
func listModels(names []string, anthropic bool) []byte {
	var b []byte
	if anthropic {
		data := make([]anthropicModel, 0, len(names))
		for _, n := range names {
			data = append(data, anthropicModel{Type: "model", ID: n, DisplayName: n, CreatedAt: "1970-01-01T00:00:00Z"})
		}
		first, last := "", ""
		if len(names) > 0 {
			first, last = names[0], names[len(names)-1]
		}
		b, _ = json.Marshal(map[string]any{"data": data, "has_more": false, "first_id": first, "last_id": last})
		return b
	}
	data := make([]openAIModel, 0, len(names))
	for _, n := range names {
		data = append(data, openAIModel{ID: n, Object: "model", OwnedBy: "tollgate"})
	}
	b, _ = json.Marshal(map[string]any{"object": "list", "data": data})
	return b
}

// getModel answers GET /v1/models/{id}.
func getModel(names []string, id string, anthropic bool) (int, []byte) {
	i := sort.SearchStrings(names, id)
	if i == len(names) || names[i] != id {
		api := translate.OpenAIChat
		if anthropic {
			api = translate.AnthropicMessages
		}
		return http.StatusNotFound, modelNotFound(id).Body(api)
	}
	var b []byte
	if anthropic {
		b, _ = json.Marshal(anthropicModel{Type: "model", ID: id, DisplayName: id, CreatedAt: "1970-01-01T00:00:00Z"})
	} else {
		b, _ = json.Marshal(openAIModel{ID: id, Object: "model", OwnedBy: "tollgate"})
	}
	return http.StatusOK, b
}

func modelNotFound(name string) *translate.Error {
	return &translate.Error{Status: http.StatusNotFound, Type: "invalid_request_error", Code: "model_not_found", Param: "model",
		Message: "The model `" + name + "` does not exist or you do not have access to it. GET /v1/models lists the models your key may use."}
}
