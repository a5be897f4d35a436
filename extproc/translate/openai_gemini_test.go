package translate

import (
	"encoding/json"
	"net/http"
	"slices"
	"strings"
	"testing"
)

var geminiTarget = Target{Kind: KindGemini, UpstreamModel: "gemini-2.5-flash"}

func TestOpenAIToGeminiRequest(t *testing.T) {
	tests := []struct {
		name string
		in   string
		path string
		want string
	}{
		{
			name: "minimal",
			in:   `{"model":"fast","messages":[{"role":"user","content":"Hi"}]}`,
			want: `{"contents":[{"role":"user","parts":[{"text":"Hi"}]}]}`,
		},
		{
			name: "stream uses streamGenerateContent with SSE; models/ prefix dropped",
			in:   `{"model":"fast","messages":[{"role":"user","content":"Hi"}],"stream":true}`,
			path: "/v1beta/models/gemini-2.5-flash:streamGenerateContent?alt=sse",
			want: `{"contents":[{"role":"user","parts":[{"text":"Hi"}]}]}`,
		},
		{
			name: "system and developer messages become systemInstruction; assistant becomes model",
			in: `{"model":"m","messages":[{"role":"system","content":"Be brief."},{"role":"developer","content":"In French."},
				{"role":"user","content":"One"},{"role":"user","content":"Two"},{"role":"assistant","content":"Un, deux."},{"role":"user","content":"Three"}]}`,
			want: `{"systemInstruction":{"parts":[{"text":"Be brief."},{"text":"In French."}]},
				"contents":[{"role":"user","parts":[{"text":"One"},{"text":"Two"}]},{"role":"model","parts":[{"text":"Un, deux."}]},{"role":"user","parts":[{"text":"Three"}]}]}`,
		},
		{
			name: "tools, function calls with signatures, function responses by name",
			in: `{"model":"m","messages":[
				{"role":"user","content":"Weather and time?"},
				{"role":"assistant","tool_calls":[
					{"id":"fc_1","type":"function","function":{"name":"get_weather","arguments":"{\"city\":\"Lyon\"}"},"extra_content":{"google":{"thought_signature":"CiwBSig"}}},
					{"id":"call_x_0_1","type":"function","function":{"name":"get_time","arguments":"{}"}}]},
				{"role":"tool","tool_call_id":"fc_1","content":"{\"temp\":21}"},
				{"role":"tool","tool_call_id":"call_x_0_1","content":"noon"}],
				"tools":[{"type":"function","function":{"name":"get_weather","description":"Weather","parameters":{"type":"object","properties":{"city":{"type":"string"}},"additionalProperties":false}}},
					{"type":"function","function":{"name":"get_time"}}],
				"tool_choice":"required"}`,
			want: `{"contents":[
				{"role":"user","parts":[{"text":"Weather and time?"}]},
				{"role":"model","parts":[
					{"thoughtSignature":"CiwBSig","functionCall":{"name":"get_weather","args":{"city":"Lyon"}}},
					{"functionCall":{"name":"get_time","args":{}}}]},
				{"role":"user","parts":[
					{"functionResponse":{"name":"get_weather","response":{"temp":21}}},
					{"functionResponse":{"name":"get_time","response":{"output":"noon"}}}]}],
				"tools":[{"functionDeclarations":[
					{"name":"get_weather","description":"Weather","parametersJsonSchema":{"type":"object","properties":{"city":{"type":"string"}},"additionalProperties":false}},
					{"name":"get_time"}]}],
				"toolConfig":{"functionCallingConfig":{"mode":"ANY"}}}`,
		},
		{
			name: "a function call history without signatures gets Google's skip value on the first call",
			in: `{"model":"m","messages":[{"role":"user","content":"x"},
				{"role":"assistant","content":"Sure.","tool_calls":[{"id":"a","type":"function","function":{"name":"f","arguments":"{}"}},{"id":"b","type":"function","function":{"name":"g","arguments":"{}"}}]},
				{"role":"tool","tool_call_id":"a","content":"1"},{"role":"tool","tool_call_id":"b","content":"2"}]}`,
			want: `{"contents":[{"role":"user","parts":[{"text":"x"}]},
				{"role":"model","parts":[{"text":"Sure."},{"thoughtSignature":"skip_thought_signature_validator","functionCall":{"name":"f","args":{}}},{"functionCall":{"name":"g","args":{}}}]},
				{"role":"user","parts":[{"functionResponse":{"name":"f","response":{"output":"1"}}},{"functionResponse":{"name":"g","response":{"output":"2"}}}]}]}`,
		},
		{
			name: "named tool_choice; none; auto",
			in: `{"model":"m","messages":[{"role":"user","content":"x"}],"tools":[{"type":"function","function":{"name":"f"}}],
				"tool_choice":{"type":"function","function":{"name":"f"}}}`,
			want: `{"contents":[{"role":"user","parts":[{"text":"x"}]}],"tools":[{"functionDeclarations":[{"name":"f"}]}],
				"toolConfig":{"functionCallingConfig":{"mode":"ANY","allowedFunctionNames":["f"]}}}`,
		},
		{
			name: "tool_choice none",
			in:   `{"model":"m","messages":[{"role":"user","content":"x"}],"tools":[{"type":"function","function":{"name":"f"}}],"tool_choice":"none"}`,
			want: `{"contents":[{"role":"user","parts":[{"text":"x"}]}],"tools":[{"functionDeclarations":[{"name":"f"}]}],"toolConfig":{"functionCallingConfig":{"mode":"NONE"}}}`,
		},
		{
			name: "images, audio and PDF",
			in: `{"model":"m","messages":[{"role":"user","content":[
				{"type":"text","text":"Describe"},
				{"type":"image_url","image_url":{"url":"data:image/webp;base64,UklGRg=="}},
				{"type":"image_url","image_url":{"url":"https://example.com/a/photo.PNG?size=large"}},
				{"type":"input_audio","input_audio":{"data":"SUQz","format":"mp3"}},
				{"type":"file","file":{"file_data":"data:application/pdf;base64,JVBERi0x"}}]}]}`,
			want: `{"contents":[{"role":"user","parts":[
				{"text":"Describe"},
				{"inlineData":{"mimeType":"image/webp","data":"UklGRg=="}},
				{"fileData":{"mimeType":"image/png","fileUri":"https://example.com/a/photo.PNG?size=large"}},
				{"inlineData":{"mimeType":"audio/mp3","data":"SUQz"}},
				{"inlineData":{"mimeType":"application/pdf","data":"JVBERi0x"}}]}]}`,
		},
		{
			name: "generation config: limits, stop, sampling, n, seed, penalties",
			in: `{"model":"m","messages":[{"role":"user","content":"x"}],"max_completion_tokens":300,"max_tokens":9,"stop":["END"],
				"temperature":1.5,"top_p":0.8,"n":3,"seed":42,"presence_penalty":0.1,"frequency_penalty":0.2,"user":"ignored"}`,
			want: `{"contents":[{"role":"user","parts":[{"text":"x"}]}],"generationConfig":{"stopSequences":["END"],"candidateCount":3,
				"maxOutputTokens":300,"temperature":1.5,"topP":0.8,"seed":42,"presencePenalty":0.1,"frequencyPenalty":0.2}}`,
		},
		{
			name: "json_schema response format",
			in: `{"model":"m","messages":[{"role":"user","content":"x"}],
				"response_format":{"type":"json_schema","json_schema":{"name":"r","schema":{"type":"object","properties":{"a":{"type":["string","null"]}}}}}}`,
			want: `{"contents":[{"role":"user","parts":[{"text":"x"}]}],"generationConfig":{"responseMimeType":"application/json",
				"responseJsonSchema":{"type":"object","properties":{"a":{"type":["string","null"]}}}}}`,
		},
		{
			name: "json_object response format",
			in:   `{"model":"m","messages":[{"role":"user","content":"x"}],"response_format":{"type":"json_object"}}`,
			want: `{"contents":[{"role":"user","parts":[{"text":"x"}]}],"generationConfig":{"responseMimeType":"application/json"}}`,
		},
		{
			name: "reasoning_effort sets a thinking budget and asks for thoughts",
			in:   `{"model":"m","messages":[{"role":"user","content":"x"}],"reasoning_effort":"low"}`,
			want: `{"contents":[{"role":"user","parts":[{"text":"x"}]}],"generationConfig":{"thinkingConfig":{"thinkingBudget":1024,"includeThoughts":true}}}`,
		},
		{
			name: "reasoning_effort none turns thinking off",
			in:   `{"model":"m","messages":[{"role":"user","content":"x"}],"reasoning_effort":"none"}`,
			want: `{"contents":[{"role":"user","parts":[{"text":"x"}]}],"generationConfig":{"thinkingConfig":{"thinkingBudget":0}}}`,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			target := geminiTarget
			if strings.Contains(tt.name, "models/") {
				target.UpstreamModel = "models/gemini-2.5-flash"
			}
			preq, err := TranslateRequest(OpenAIChat, target, []byte(tt.in))
			if err != nil {
				t.Fatal(err)
			}
			if !jsonEqual(t, preq.Body, []byte(tt.want)) {
				t.Fatalf("body:\n got %s\nwant %s", preq.Body, compactJSON(t, tt.want))
			}
			want := tt.path
			if want == "" {
				want = "/v1beta/models/gemini-2.5-flash:generateContent"
			}
			if preq.Path != want || preq.Method != http.MethodPost || len(preq.Headers) != 0 {
				t.Fatalf("%s %s %v, want POST %s and no extra headers", preq.Method, preq.Path, preq.Headers, want)
			}
		})
	}
}

func TestOpenAIToGeminiRequestErrors(t *testing.T) {
	cases := slices.Concat(requestErrorCases, []struct{ name, in, code, param string }{
		{"logprobs", `{"model":"m","messages":[{"role":"user","content":"x"}],"logprobs":true}`, CodeUnsupportedParameter, "logprobs"},
		{"tool result for an unknown call", `{"model":"m","messages":[{"role":"user","content":"x"},{"role":"tool","tool_call_id":"nope","content":"1"}]}`, CodeInvalidValue, "messages[1].tool_call_id"},
		{"image in a tool result", `{"model":"m","messages":[{"role":"assistant","tool_calls":[{"id":"a","type":"function","function":{"name":"f","arguments":"{}"}}]},{"role":"tool","tool_call_id":"a","content":[{"type":"image_url","image_url":{"url":"https://x/y.png"}}]}]}`, CodeUnsupportedContent, "messages[1].content"},
		{"file_data not a data URL", `{"model":"m","messages":[{"role":"user","content":[{"type":"file","file":{"file_data":"JVBERi0x"}}]}]}`, CodeInvalidValue, "messages[0].content[0].file.file_data"},
	})
	for _, tt := range cases {
		t.Run(tt.name, func(t *testing.T) {
			assertRequestError(t, OpenAIChat, geminiTarget, tt.in, tt.code, tt.param)
		})
	}
}

func TestOpenAIToGeminiResponse(t *testing.T) {
	tests := []struct {
		fixture string
		usage   Usage
		check   func(t *testing.T, cc chatCompletion)
	}{
		{"gemini/text.json", Usage{InputTokens: 40, OutputTokens: 8, CachedInputTokens: 32}, func(t *testing.T, cc chatCompletion) {
			if *cc.Choices[0].Message.Content != "Paris is the capital of France." || cc.Choices[0].FinishReason != "stop" {
				t.Errorf("choice %+v", cc.Choices[0])
			}
			if cc.ID != "tgGeminiText01" || cc.Model != "gemini-2.5-flash" {
				t.Errorf("id %q model %q", cc.ID, cc.Model)
			}
		}},
		{"gemini/thinking.json", Usage{InputTokens: 14, OutputTokens: 66, ReasoningTokens: 61}, func(t *testing.T, cc chatCompletion) {
			m := cc.Choices[0].Message
			if *m.Content != "Take the train." || m.ReasoningContent != "Weighing the options first." {
				t.Errorf("message %+v", m)
			}
		}},
		{"gemini/tool.json", Usage{InputTokens: 130, OutputTokens: 22}, func(t *testing.T, cc chatCompletion) {
			c := cc.Choices[0]
			if c.FinishReason != "tool_calls" || c.Message.Content != nil || len(c.Message.ToolCalls) != 2 {
				t.Fatalf("choice %+v", c)
			}
			tc := c.Message.ToolCalls
			if tc[0].ID != "fc_tg_1" || tc[0].Function.Arguments != `{"city":"Lyon","unit":"celsius"}` || string(tc[0].ExtraContent) != `{"google":{"thought_signature":"CiwBAdHtimSigOne"}}` {
				t.Errorf("first call %+v %s", tc[0], tc[0].ExtraContent)
			}
			if tc[1].ID != "call_tgGeminiTool01_0_1" || tc[1].Function.Arguments != `{}` || tc[1].ExtraContent != nil {
				t.Errorf("second call %+v", tc[1])
			}
		}},
		{"gemini/blocked.json", Usage{InputTokens: 17}, func(t *testing.T, cc chatCompletion) {
			c := cc.Choices[0]
			if c.FinishReason != "content_filter" || c.Message.Content != nil || c.Message.Refusal == nil || !strings.Contains(*c.Message.Refusal, "SAFETY") {
				t.Errorf("choice %+v", c)
			}
		}},
		{"gemini/safety_candidate.json", Usage{InputTokens: 11}, func(t *testing.T, cc chatCompletion) {
			if c := cc.Choices[0]; c.FinishReason != "content_filter" || c.Message.Content != nil {
				t.Errorf("choice %+v", c)
			}
		}},
		{"gemini/two_candidates.json", Usage{InputTokens: 6, OutputTokens: 9}, func(t *testing.T, cc chatCompletion) {
			if len(cc.Choices) != 2 || cc.Choices[1].Index != 1 || cc.Choices[1].FinishReason != "length" || *cc.Choices[1].Message.Content != "Tails, and more" {
				t.Errorf("choices %+v", cc.Choices)
			}
		}},
	}
	for _, tt := range tests {
		t.Run(tt.fixture, func(t *testing.T) {
			ex := exchange{api: OpenAIChat, target: geminiTarget, opts: ResponseOptions{Created: 1700000000}, contentType: "application/json; charset=UTF-8"}
			r := runSplits(t, ex, fixture(t, tt.fixture))
			if r.err != nil {
				t.Fatal(r.err)
			}
			if r.usage != tt.usage {
				t.Errorf("usage = %+v, want %+v", r.usage, tt.usage)
			}
			var cc chatCompletion
			if err := json.Unmarshal([]byte(r.out), &cc); err != nil {
				t.Fatal(err)
			}
			var u openAIUsage
			_ = json.Unmarshal(cc.Usage, &u)
			if u.PromptTokens != tt.usage.InputTokens || u.CompletionTokens != tt.usage.OutputTokens || u.TotalTokens != tt.usage.InputTokens+tt.usage.OutputTokens {
				t.Errorf("client usage %s, want %+v", cc.Usage, tt.usage)
			}
			tt.check(t, cc)
			golden(t, "openai_gemini/"+strings.TrimSuffix(strings.TrimPrefix(tt.fixture, "gemini/"), ".json")+".json", []byte(r.out))
		})
	}
}

func TestOpenAIToGeminiStream(t *testing.T) {
	tests := []struct {
		fixture   string
		usage     Usage
		errType   string
		content   map[int]string
		reasoning string
		refusal   string
		tools     []toolSummary
		finish    map[int]string
	}{
		{fixture: "gemini/stream_text.sse", usage: Usage{InputTokens: 9, OutputTokens: 6, CachedInputTokens: 4},
			content: map[int]string{0: "Bonjour \"tout\"\nle monde!"}, finish: map[int]string{0: "stop"}},
		{fixture: "gemini/stream_tool.sse", usage: Usage{InputTokens: 60, OutputTokens: 19},
			content: map[int]string{0: "Looking it up."}, finish: map[int]string{0: "tool_calls"},
			tools: []toolSummary{{ID: "call_tgGeminiStreamTool_0_0", Name: "get_weather", Args: `{"city":"Osaka"}`, Signature: "CiQBSigStream"},
				{ID: "call_tgGeminiStreamTool_0_1", Name: "get_time", Args: `{}`}}},
		{fixture: "gemini/stream_thinking.sse", usage: Usage{InputTokens: 14, OutputTokens: 66, ReasoningTokens: 61},
			content: map[int]string{0: "Take the train."}, reasoning: "Compare the two routes.", finish: map[int]string{0: "stop"}},
		{fixture: "gemini/stream_blocked.sse", usage: Usage{InputTokens: 23},
			content: map[int]string{0: ""}, refusal: "The provider blocked this prompt (PROHIBITED_CONTENT).", finish: map[int]string{0: "content_filter"}},
		{fixture: "gemini/stream_two_candidates.sse", usage: Usage{InputTokens: 6, OutputTokens: 4},
			content: map[int]string{0: "Heads.", 1: "Tails"}, finish: map[int]string{0: "stop", 1: "length"}},
		{fixture: "gemini/stream_error.sse", usage: Usage{InputTokens: 9, OutputTokens: tokens("Par"), Estimated: true}, errType: "UNAVAILABLE",
			content: map[int]string{0: "Par"}, finish: map[int]string{}},
	}
	for _, tt := range tests {
		for _, includeUsage := range []bool{false, true} {
			name := strings.TrimSuffix(strings.TrimPrefix(tt.fixture, "gemini/"), ".sse")
			if includeUsage {
				name += "_usage"
			}
			t.Run(name, func(t *testing.T) {
				ex := exchange{api: OpenAIChat, target: geminiTarget, opts: ResponseOptions{Stream: true, IncludeUsage: includeUsage, Created: 1700000000}, contentType: "text/event-stream"}
				r := runSplits(t, ex, fixture(t, tt.fixture))
				if tt.errType == "" && r.err != nil {
					t.Fatal(r.err)
				}
				if tt.errType != "" {
					if se, ok := errorAs[*StreamError](r.err); !ok || se.Type != tt.errType {
						t.Fatalf("err = %v, want StreamError %q", r.err, tt.errType)
					}
				}
				if r.usage != tt.usage {
					t.Errorf("usage = %+v, want %+v", r.usage, tt.usage)
				}
				s := summarizeChatStream(t, r.out)
				for i, want := range tt.content {
					if s.Content[i] != want {
						t.Errorf("content[%d] = %q, want %q", i, s.Content[i], want)
					}
				}
				if s.Reasoning[0] != tt.reasoning || s.Refusal[0] != tt.refusal {
					t.Errorf("reasoning %q refusal %q", s.Reasoning[0], s.Refusal[0])
				}
				if len(s.Tools[0]) != len(tt.tools) {
					t.Fatalf("tools %+v, want %+v", s.Tools[0], tt.tools)
				}
				for i := range tt.tools {
					if s.Tools[0][i] != tt.tools[i] {
						t.Errorf("tool %d = %+v, want %+v", i, s.Tools[0][i], tt.tools[i])
					}
				}
				if len(s.Finish) != len(tt.finish) {
					t.Errorf("finish %v, want %v", s.Finish, tt.finish)
				}
				for i, want := range tt.finish {
					if s.Finish[i] != want {
						t.Errorf("finish[%d] = %q, want %q", i, s.Finish[i], want)
					}
				}
				finished := tt.errType == ""
				if s.Done != finished {
					t.Errorf("[DONE] = %v, want %v", s.Done, finished)
				}
				if includeUsage && finished {
					if s.Usage == nil || s.Usage.PromptTokens != tt.usage.InputTokens || s.Usage.CompletionTokens != tt.usage.OutputTokens {
						t.Errorf("usage chunk %+v, want %+v", s.Usage, tt.usage)
					}
				} else if s.Usage != nil {
					t.Errorf("unexpected usage chunk")
				}
				golden(t, "openai_gemini/"+name+".sse", []byte(r.out))
			})
		}
	}
}

func TestOpenAIToGeminiStreamCut(t *testing.T) {
	body := fixture(t, "gemini/stream_text.sse")
	cut := body[:strings.Index(string(body), `"!"`)]
	ex := exchange{api: OpenAIChat, target: geminiTarget, opts: ResponseOptions{Stream: true, IncludeUsage: true, EstimatedInputTokens: 50}, contentType: "text/event-stream"}
	r := runSplits(t, ex, cut)
	if r.err != nil {
		t.Fatal(r.err)
	}
	s := summarizeChatStream(t, r.out)
	if s.Done || s.Usage != nil || len(s.Finish) != 0 {
		t.Errorf("a cut stream must not look finished: %+v", s)
	}
	if !r.usage.Estimated || r.usage.InputTokens != 50 || r.usage.OutputTokens == 0 {
		t.Errorf("usage = %+v, want an estimate with the request's input estimate", r.usage)
	}
}

func TestOpenAIToGeminiErrors(t *testing.T) {
	tests := []struct {
		fixture string
		status  int
		want    string
	}{
		{"gemini/error_invalid_argument.json", 400, `{"error":{"message":"API key not valid. Please pass a valid API key.","type":"invalid_request_error","param":null,"code":"INVALID_ARGUMENT"}}`},
		{"gemini/error_resource_exhausted.json", 429, `{"error":{"message":"Resource has been exhausted (e.g. check quota).","type":"rate_limit_error","param":null,"code":"RESOURCE_EXHAUSTED"}}`},
	}
	for _, tt := range tests {
		t.Run(tt.fixture, func(t *testing.T) {
			ex := exchange{api: OpenAIChat, target: geminiTarget, status: tt.status, contentType: "application/json"}
			r := runSplits(t, ex, fixture(t, tt.fixture))
			if r.err != nil || r.out != tt.want {
				t.Fatalf("got %s (%v)\nwant %s", r.out, r.err, tt.want)
			}
		})
	}
}
