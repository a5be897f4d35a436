// Placeholders for the pairs not yet written; each moves to its own file.

package translate

type openAIToGemini struct{}
type anthropicToOpenAI struct{}

func (openAIToGemini) request(t Target, body []byte) (ProviderRequest, error) {
	return ProviderRequest{}, nil
}
func (openAIToGemini) response(t Target, o ResponseOptions) handler { return rawHandler{} }
func (anthropicToOpenAI) request(t Target, body []byte) (ProviderRequest, error) {
	return ProviderRequest{}, nil
}
func (anthropicToOpenAI) response(t Target, o ResponseOptions) handler { return rawHandler{} }
