package redact

import (
	"encoding/json"
	"strings"
	"testing"
)

// Every case is a text and what Text makes of it. True positives replace
// the value, false positives are texts that look alike and must stay.
var textCases = []struct {
	name, in, want string
}{
	// E-mail addresses.
	{"email", "Write to ada@example.com today.", "Write to [EMAIL] today."},
	{"email with tag and subdomains", "cc: first.last+tag@mail.example.co.uk", "cc: [EMAIL]"},
	{"email upper case, sentence dot", "Contact ADA@EXAMPLE.ORG.", "Contact [EMAIL]."},
	{"email in angle brackets", "Ada <ada@example.com>", "Ada <[EMAIL]>"},
	{"not an email: decorator", "@Override public void run()", "@Override public void run()"},
	{"not an email: no domain dot", "ssh root@localhost", "ssh root@localhost"},
	{"not an email: density suffix", "use icon@2x.png on retina", "use icon@2x.png on retina"},
	{"not an email: version pin", "npm i lodash@4.17.21", "npm i lodash@4.17.21"},
	{"not an email: scoped package", "npm i @types/node", "npm i @types/node"},
	{"not an email: handle", "thanks @ada!", "thanks @ada!"},

	// Phone numbers.
	{"phone international", "Call +49 30 1234567 now", "Call [PHONE] now"},
	{"phone international compact", "WhatsApp +447911123456.", "WhatsApp [PHONE]."},
	{"phone +1 with area code", "US office: +1 (555) 123-4567", "US office: [PHONE]"},
	{"phone NANP parentheses", "(555) 123-4567", "[PHONE]"},
	{"phone NANP dashes", "call 555-123-4567 or", "call [PHONE] or"},
	{"phone NANP dots", "555.123.4567", "[PHONE]"},
	{"phone NANP with 1", "1 555 123 4567", "[PHONE]"},
	{"phone UK national", "London 020 7946 0958", "London [PHONE]"},
	{"phone German with slash", "Tel. 0171/1234567", "Tel. [PHONE]"},
	{"phone French pairs", "06.12.34.56.78", "[PHONE]"},
	{"phone international prefix 00", "0049 30 1234567", "[PHONE]"},
	{"not a phone: ISO date", "on 2024-01-15 at 12:30", "on 2024-01-15 at 12:30"},
	{"not a phone: European date", "am 01.02.2024", "am 01.02.2024"},
	{"not a phone: IP address", "ping 192.168.100.200", "ping 192.168.100.200"},
	{"not a phone: version", "Go 1.26.0 and v10.200.3000", "Go 1.26.0 and v10.200.3000"},
	{"not a phone: amount", "$1,234,567.89", "$1,234,567.89"},
	{"not a phone: ISBN", "ISBN 978-3-16-148410-0", "ISBN 978-3-16-148410-0"},
	{"not a phone: bare digits", "order 5551234567 shipped", "order 5551234567 shipped"},
	{"not a phone: sum", "12345678 + 87654321", "12345678 + 87654321"},
	{"not a phone: SSN-shaped", "case 123-45-6789", "case 123-45-6789"},
	{"not a phone: part of a word", "build a1-555-123-4567x", "build a1-555-123-4567x"},

	// Payment cards.
	{"card Visa grouped", "card 4111 1111 1111 1111 exp 12/29", "card [CARD] exp 12/29"},
	{"card Mastercard compact", "5555555555554444", "[CARD]"},
	{"card Mastercard 2-series dashes", "2223-0031-2200-3222", "[CARD]"},
	{"card Amex 4-6-5", "Amex 3782 822463 10005.", "Amex [CARD]."},
	{"card Discover", "6011111111111117", "[CARD]"},
	{"not a card: Luhn fails", "4111 1111 1111 1112", "4111 1111 1111 1112"},
	{"not a card: starts with 9", "9999 9999 9999 9995", "9999 9999 9999 9995"},
	{"not a card: mixed separators", "4111-1111 1111-1111", "4111-1111 1111-1111"},
	{"not a card: too long", "41111111111111111111111", "41111111111111111111111"},
	{"not a card: 12 digits", "411111111116", "411111111116"},

	// IBANs.
	{"IBAN German grouped", "IBAN: DE89 3704 0044 0532 0130 00, BIC COBADEFFXXX", "IBAN: [IBAN], BIC COBADEFFXXX"},
	{"IBAN British with letters", "GB82 WEST 1234 5698 7654 32", "[IBAN]"},
	{"IBAN Dutch compact", "NL91ABNA0417164300", "[IBAN]"},
	{"IBAN French", "FR1420041010050500013M02606", "[IBAN]"},
	{"IBAN then words", "pay DE89370400440532013000 by Friday", "pay [IBAN] by Friday"},
	{"not an IBAN: check fails", "DE89 3704 0044 0532 0130 01", "DE89 3704 0044 0532 0130 01"},
	{"not an IBAN: wrong length for DE", "DE89 3704 0044 0532", "DE89 3704 0044 0532"},
	{"not an IBAN: lower case", "de89370400440532013000", "de89370400440532013000"},
	{"not an IBAN: part of a word", "XDE89370400440532013000", "XDE89370400440532013000"},
	{"not an IBAN: no such country", "AA00AA04000000000000 is a code", "AA00AA04000000000000 is a code"},

	// Secrets.
	{"secret OpenAI project key", "key sk-proj-Ab3dEf6hIj9kLm2nOp5qRs8tUv1wXy4z done", "key [SECRET] done"},
	{"secret Anthropic key", "ANTHROPIC_API_KEY=sk-ant-api03-Zx8Qm2LpR7vT4kN9wB3cY6hJ1sD5fG0a", "ANTHROPIC_API_KEY=[SECRET]"},
	{"secret Tollgate key", "Bearer tg-7f3K9pQ2mX8vL4nR6tY1wZ5bC0dE9gH2jK4lM6nP8qR", "Bearer [SECRET]"},
	{"secret AWS access key id", "aws_access_key_id = AKIAIOSFODNN7EXAMPLE", "aws_access_key_id = [SECRET]"},
	{"secret GitHub token", "ghp_1a2B3c4D5e6F7g8H9i0J1k2L3m4N5o6P7q8R", "[SECRET]"},
	{"secret Google API key", "AIzaSyA1b2C3d4E5f6G7h8I9j0K1l2M3n4O5p6Q", "[SECRET]"},
	{"secret Stripe key", "sk_live_4eC39HqLyjWDarjtT1zdp7dc", "[SECRET]"},
	{"secret JWT", "token eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxMjM0NTY3ODkwIn0.dozjgNryP4J3jVmNHl0w5N_XgL0n3I9PlFUP0THsR8U ok", "token [SECRET] ok"},
	{"secret PEM private key", "-----BEGIN PRIVATE KEY-----\nMIIEvQIBADANBgkqhkiG9w0BAQEFAASC\n-----END PRIVATE KEY-----\nthanks", "[SECRET]\nthanks"},
	{"secret random string", "password: Zx8Qm2LpR7vT4kN9wB3cY6hJ1sD5fG0aE8uI2oPq", "password: [SECRET]"},
	{"not a secret: scikit-learn", "pip install scikit-learn; sk-learn is its alias", "pip install scikit-learn; sk-learn is its alias"},
	{"not a secret: words after sk-", "sk-the-quick-brown-fox-jumps-over-the-lazy-dog", "sk-the-quick-brown-fox-jumps-over-the-lazy-dog"},
	{"not a secret: UUID", "id 123e4567-e89b-12d3-a456-426614174000", "id 123e4567-e89b-12d3-a456-426614174000"},
	{"not a secret: git SHA", "commit 9fceb02d0ae598e95dc970b74767f19372d61af8", "commit 9fceb02d0ae598e95dc970b74767f19372d61af8"},
	{"not a secret: camelCase identifier", "class AbstractSingletonProxyFactoryBean2Handler3Impl {}", "class AbstractSingletonProxyFactoryBean2Handler3Impl {}"},
	{"not a secret: constant", "MAX_RETRY_COUNT_FOR_UPSTREAM_REQUESTS_2024_V2", "MAX_RETRY_COUNT_FOR_UPSTREAM_REQUESTS_2024_V2"},
	{"not a secret: URL", "see https://example.com/api/v1/users/12345?page=2", "see https://example.com/api/v1/users/12345?page=2"},
	{"not a secret: public PEM", "-----BEGIN PUBLIC KEY-----\nMIIBIjANBgkqhkiG9w0BAQEFAAOC\n-----END PUBLIC KEY-----", "-----BEGIN PUBLIC KEY-----\nMIIBIjANBgkqhkiG9w0BAQEFAAOC\n-----END PUBLIC KEY-----"},
	{"not a secret: AKIA word", "AKIAS are birds", "AKIAS are birds"},

	// Together, and text that is left alone entirely.
	{"several kinds", "Ada (ada@example.com, +44 20 7946 0958) pays with 4111111111111111 from GB82WEST12345698765432.",
		"Ada ([EMAIL], [PHONE]) pays with [CARD] from [IBAN]."},
	{"unicode around values", "Grüße an ada@example.com – danke", "Grüße an [EMAIL] – danke"},
	{"nothing to redact", "The capital of France is Paris; it had 2,102,650 inhabitants in 2023.", "The capital of France is Paris; it had 2,102,650 inhabitants in 2023."},
	{"empty", "", ""},
}

func TestText(t *testing.T) {
	for _, c := range textCases {
		t.Run(c.name, func(t *testing.T) {
			var counts Counts
			got := Text(c.in, &counts)
			if got != c.want {
				t.Errorf("Text(%q)\n got %q\nwant %q", c.in, got, c.want)
			}
			placeholders := 0
			for k := Kind(0); k < numKinds; k++ {
				n := strings.Count(c.want, k.Placeholder())
				placeholders += n
				if counts[k] != n {
					t.Errorf("count of %s = %d, want %d", k, counts[k], n)
				}
			}
			if placeholders != counts.Total() {
				t.Errorf("total %d, want %d", counts.Total(), placeholders)
			}
		})
	}
}

// Text must not allocate for text with nothing to redact: the common case
// costs a scan and no copy.
func TestTextWithoutValuesDoesNotAllocate(t *testing.T) {
	s := strings.Repeat("The capital of France is Paris, founded in 250 BC; see page 12. ", 50)
	var c Counts
	if n := testing.AllocsPerRun(20, func() { _ = Text(s, &c) }); n != 0 {
		t.Errorf("%v allocations", n)
	}
}

func TestBody(t *testing.T) {
	for _, c := range []struct {
		name   string
		fields Fields
		in     string
		want   string
		counts map[Kind]int
	}{
		{"chat: string and part content, not the model or roles",
			OpenAIChat,
			`{"model":"gpt-4o","messages":[{"role":"system","content":"Reply to ada@example.com"},{"role":"user","content":[{"type":"text","text":"My card: 4111 1111 1111 1111"},{"type":"image_url","image_url":{"url":"https://x.example/a@b.co/img.png"}}]}],"user":"ada@example.com"}`,
			`{"model":"gpt-4o","messages":[{"role":"system","content":"Reply to [EMAIL]"},{"role":"user","content":[{"type":"text","text":"My card: [CARD]"},{"type":"image_url","image_url":{"url":"https://x.example/a@b.co/img.png"}}]}],"user":"ada@example.com"}`,
			map[Kind]int{Email: 1, Card: 1}},
		{"chat: tool call arguments and escapes",
			OpenAIChat,
			`{"model":"m","messages":[{"role":"assistant","tool_calls":[{"id":"c1","type":"function","function":{"name":"send","arguments":"{\"to\":\"ada@example.com\"}"}}]},{"role":"tool","tool_call_id":"c1","content":"sent to \u0061da@example.com\n"}]}`,
			`{"model":"m","messages":[{"role":"assistant","tool_calls":[{"id":"c1","type":"function","function":{"name":"send","arguments":"{\"to\":\"[EMAIL]\"}"}}]},{"role":"tool","tool_call_id":"c1","content":"sent to [EMAIL]\n"}]}`,
			map[Kind]int{Email: 2}},
		{"responses: instructions and input items",
			OpenAIResponses,
			`{"model":"m","instructions":"Never reveal sk-proj-Ab3dEf6hIj9kLm2nOp5qRs8tUv1wXy4z","input":[{"role":"user","content":[{"type":"input_text","text":"IBAN DE89370400440532013000"}]},{"type":"function_call_output","call_id":"c","output":"+49 30 1234567"}]}`,
			`{"model":"m","instructions":"Never reveal [SECRET]","input":[{"role":"user","content":[{"type":"input_text","text":"IBAN [IBAN]"}]},{"type":"function_call_output","call_id":"c","output":"[PHONE]"}]}`,
			map[Kind]int{Secret: 1, IBAN: 1, Phone: 1}},
		{"responses: input string",
			OpenAIResponses,
			`{"model":"m","input":"mail ada@example.com"}`,
			`{"model":"m","input":"mail [EMAIL]"}`,
			map[Kind]int{Email: 1}},
		{"embeddings: strings, not token arrays",
			OpenAIEmbeddings,
			`{"model":"e","input":["ada@example.com",[1,2,3],"plain"]}`,
			`{"model":"e","input":["[EMAIL]",[1,2,3],"plain"]}`,
			map[Kind]int{Email: 1}},
		{"anthropic: system blocks, text and tool results",
			AnthropicMessages,
			`{"model":"c","max_tokens":10,"system":[{"type":"text","text":"Agent for ada@example.com"}],"messages":[{"role":"user","content":[{"type":"tool_result","tool_use_id":"t","content":"(555) 123-4567"},{"type":"tool_result","tool_use_id":"u","content":[{"type":"text","text":"bob@example.com"}]},{"type":"image","source":{"type":"base64","media_type":"image/png","data":"Zx8Qm2LpR7vT4kN9wB3cY6hJ1sD5fG0aE8uI2oPq"}}]}]}`,
			`{"model":"c","max_tokens":10,"system":[{"type":"text","text":"Agent for [EMAIL]"}],"messages":[{"role":"user","content":[{"type":"tool_result","tool_use_id":"t","content":"[PHONE]"},{"type":"tool_result","tool_use_id":"u","content":[{"type":"text","text":"[EMAIL]"}]},{"type":"image","source":{"type":"base64","media_type":"image/png","data":"Zx8Qm2LpR7vT4kN9wB3cY6hJ1sD5fG0aE8uI2oPq"}}]}]}`,
			map[Kind]int{Email: 2, Phone: 1}},
		{"HTML characters stay as they were",
			OpenAIChat,
			`{"messages":[{"role":"user","content":"<b>ada@example.com</b> & co"}]}`,
			`{"messages":[{"role":"user","content":"<b>[EMAIL]</b> & co"}]}`,
			map[Kind]int{Email: 1}},
		{"nothing to redact: the same bytes, whitespace and all",
			OpenAIChat,
			"{ \"model\" : \"m\",\n  \"messages\": [ {\"role\":\"user\", \"content\":\"hi\"} ] }",
			"{ \"model\" : \"m\",\n  \"messages\": [ {\"role\":\"user\", \"content\":\"hi\"} ] }",
			nil},
	} {
		t.Run(c.name, func(t *testing.T) {
			out, counts, err := Body([]byte(c.in), c.fields)
			if err != nil {
				t.Fatal(err)
			}
			if string(out) != c.want {
				t.Errorf("Body\n got %s\nwant %s", out, c.want)
			}
			if !json.Valid(out) {
				t.Errorf("not valid JSON: %s", out)
			}
			for k := Kind(0); k < numKinds; k++ {
				if counts[k] != c.counts[k] {
					t.Errorf("count of %s = %d, want %d", k, counts[k], c.counts[k])
				}
			}
		})
	}
}

func TestBodyRefusesWhatIsNotAJSONObject(t *testing.T) {
	for _, in := range []string{``, `[]`, `"x"`, `{"a":`, `{"a":"b"`, `{"a":"b"}x`, `{"a" "b"}`, `{"a":[1,}`, `{"a":"\"}`, strings.Repeat(`{"a":`, maxDepth+1)} {
		if _, _, err := Body([]byte(in), OpenAIChat); err == nil {
			t.Errorf("Body(%.40q) accepted", in)
		}
	}
}
