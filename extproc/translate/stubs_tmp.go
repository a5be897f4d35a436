// Placeholders for the pairs not yet written; each moves to its own file.

package translate

type anthropicToOpenAI struct{}

func (anthropicToOpenAI) request(t Target, body []byte) (ProviderRequest, error) {
	return ProviderRequest{}, nil
}
func (anthropicToOpenAI) response(t Target, o ResponseOptions) handler { return rawHandler{} }
