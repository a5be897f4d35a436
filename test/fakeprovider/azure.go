package fakeprovider

import (
	"net/http"
	"strings"
)

// azureDialect is an Azure OpenAI resource: the OpenAI formats under
// /openai/deployments/{deployment}/…?api-version=, with Azure's own
// credential header and its own shapes for the errors its gateway answers
// (the model's errors keep OpenAI's shape).
type azureDialect struct{}

func (azureDialect) authorize(c *call) bool {
	key := c.r.Header.Get("api-key")
	switch {
	case key == "":
		c.azureFail(http.StatusUnauthorized, "401", "Access denied due to missing subscription key. Make sure to include subscription key when making requests to an API.")
		return false
	case key != c.s.opts.APIKey:
		c.azureFail(http.StatusUnauthorized, "401", "Access denied due to invalid subscription key or wrong API endpoint. Make sure to provide a valid key for an active subscription and use a correct regional API endpoint for your resource.")
		return false
	}
	return true
}

func (azureDialect) serve(c *call) {
	rest, ok := strings.CutPrefix(c.r.URL.Path, "/openai/deployments/")
	deployment, op, _ := strings.Cut(rest, "/")
	if !ok || c.r.Method != http.MethodPost || c.r.URL.Query().Get("api-version") == "" ||
		op != "chat/completions" && op != "embeddings" {
		// Azure says no more than this, even when only api-version is
		// missing.
		c.azureFail(http.StatusNotFound, "404", "Resource not found")
		return
	}
	if !c.serves(deployment) {
		c.azureFail(http.StatusNotFound, "DeploymentNotFound", "The API deployment for this resource does not exist. If you created the deployment within the last 5 minutes, please wait a moment and try again.")
		return
	}
	if op == "embeddings" {
		openAIEmbeddings(c, deployment)
		return
	}
	openAIChat(c, deployment)
}

func (azureDialect) writeError(c *call, status int, msg string) {
	switch status {
	case http.StatusUnauthorized:
		if msg == "" {
			msg = "Access denied due to invalid subscription key or wrong API endpoint. Make sure to provide a valid key for an active subscription and use a correct regional API endpoint for your resource."
		}
		c.azureFail(status, "401", msg)
	case http.StatusTooManyRequests:
		if msg == "" {
			msg = "Requests to the ChatCompletions_Create Operation under Azure OpenAI API version " + c.r.URL.Query().Get("api-version") +
				" have exceeded call rate limit of your current OpenAI S0 pricing tier. Please retry after " + retryOr(c.b.RetryAfter, "1") + " second."
		}
		c.azureFail(status, "429", msg)
	default:
		// Errors from behind the gateway (the model's) have OpenAI's shape.
		openAIDialect{}.writeError(c, status, msg)
	}
}

// azureFail answers with the error shape of Azure's API gateway, whose code
// is a string.
func (c *call) azureFail(status int, code, msg string) {
	if c.b.RetryAfter != "" {
		c.w.Header().Set("Retry-After", c.b.RetryAfter)
	}
	c.w.Header().Set("apim-request-id", c.id(""))
	c.writeJSON(status, obj{"error": obj{"code": code, "message": msg}})
}

// azureFilters is the content-filter verdict Azure attaches to prompts and
// choices: nothing filtered.
func azureFilters() obj {
	safe := func() obj { return obj{"filtered": false, "severity": "safe"} }
	return obj{"hate": safe(), "self_harm": safe(), "sexual": safe(), "violence": safe()}
}

func retryOr(v, def string) string {
	if v == "" {
		return def
	}
	return v
}
