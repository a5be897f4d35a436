package redact

import "strings"

// nextSecret finds a secret-looking token:
//
//   - API keys by their issuers' prefixes: OpenAI and Anthropic (sk-…),
//     Tollgate (tg-…, tgadm-…, tgop-…), Stripe (sk_live_…, rk_test_…),
//     AWS access key ids (AKIA…, ASIA…), Google (AIza…), GitHub (ghp_…,
//     github_pat_…), GitLab (glpat-…), Slack (xoxb-…), Hugging Face
//     (hf_…), each followed by enough key characters to be a key, not a
//     word ("sk-learn" is not one);
//   - JSON Web Tokens (eyJ….eyJ….signature) and PEM private key blocks;
//   - other long random-looking strings: a run of letters, digits, _ and -
//     with a part of 32 to 256 characters that mixes upper case, lower
//     case and digits (at least two of each) and changes between them at
//     least every third character, as random keys do and identifiers
//     (camelCase, snake_case), words, hex hashes, UUIDs and numbers do
//     not.
func nextSecret(s string, from int, st *passState) (int, int, bool) {
	for i := from; i < len(s); i++ {
		if !isTokenChar(s[i]) || (i > 0 && isTokenChar(s[i-1])) {
			continue
		}
		j := i
		for j < len(s) && isTokenChar(s[j]) {
			j++
		}
		switch {
		case s[i] == '-':
			if end, ok := pemBlock(s, i, st); ok {
				return i, end, true
			}
		case j-i < minKeyLen:
			// Most words: too short for any key.
		case s[i] == 'e':
			if end, ok := jwt(s, i, j); ok {
				return i, end, true
			}
		}
		if j-i >= minKeyLen && (prefixedKey(s[i:j]) || randomLooking(s[i:j])) {
			return i, j, true
		}
		i = j
	}
	return 0, 0, false
}

func isTokenChar(b byte) bool { return isAlnum(b) || b == '_' || b == '-' }

// keyPrefixes are issuers' key prefixes and the fewest key characters
// that follow them in a real key.
var keyPrefixes = []struct {
	prefix string
	min    int
}{
	{"sk-", 20}, {"tgadm-", 20}, {"tgop-", 20}, {"tg-", 20},
	{"sk_live_", 16}, {"sk_test_", 16}, {"rk_live_", 16}, {"rk_test_", 16},
	{"ghp_", 30}, {"gho_", 30}, {"ghu_", 30}, {"ghs_", 30}, {"ghr_", 30}, {"github_pat_", 30},
	{"glpat-", 20}, {"xoxb-", 10}, {"xoxp-", 10}, {"xoxa-", 10}, {"xoxr-", 10}, {"xoxs-", 10},
	{"hf_", 30},
}

// minKeyLen is the shortest token prefixedKey, randomLooking or jwt can
// match (xoxb- and ten characters).
const minKeyLen = 15

func prefixedKey(tok string) bool {
	for _, p := range keyPrefixes {
		if p.prefix[0] != tok[0] {
			continue
		}
		if rest, ok := strings.CutPrefix(tok, p.prefix); ok && len(rest) >= p.min && hasDigitOrUpper(rest) {
			return true
		}
	}
	switch {
	case len(tok) == 20 && (strings.HasPrefix(tok, "AKIA") || strings.HasPrefix(tok, "ASIA")):
		for k := 4; k < 20; k++ {
			if !isUpper(tok[k]) && !isDigit(tok[k]) {
				return false
			}
		}
		return true
	case len(tok) == 39 && strings.HasPrefix(tok, "AIza"):
		return true
	}
	return false
}

// hasDigitOrUpper keeps lower-case words after a prefix
// ("sk-the-quick-brown-fox-jumps") from counting as keys.
func hasDigitOrUpper(s string) bool {
	for k := 0; k < len(s); k++ {
		if isDigit(s[k]) || isUpper(s[k]) {
			return true
		}
	}
	return false
}

// randomLooking applies the test for unprefixed secrets to each part of
// tok between _ and -.
func randomLooking(tok string) bool {
	if len(tok) < 32 {
		return false
	}
	for start := 0; start < len(tok); {
		end := start
		for end < len(tok) && tok[end] != '_' && tok[end] != '-' {
			end++
		}
		if n := end - start; n >= 32 && n <= 256 && randomPart(tok[start:end]) {
			return true
		}
		start = end + 1
	}
	return false
}

// randomPart: at least two each of upper case, lower case and digits;
// classes changing at least every third character; lower-case letters in
// runs of 2.5 on average at most (words in identifiers run longer; in
// random base62 the average is 1.7); at least 16 distinct characters (a
// repeated pattern is not random).
func randomPart(part string) bool {
	var upper, lower, digit, changes, lowerRuns, distinct int
	var seen [256]bool
	prev := 0
	for k := 0; k < len(part); k++ {
		if !seen[part[k]] {
			seen[part[k]] = true
			distinct++
		}
		c := 0
		switch b := part[k]; {
		case isUpper(b):
			upper, c = upper+1, 1
		case isLower(b):
			lower, c = lower+1, 2
			if prev != 2 {
				lowerRuns++
			}
		default:
			digit, c = digit+1, 3
		}
		if k > 0 && c != prev {
			changes++
		}
		prev = c
	}
	return upper >= 2 && lower >= 2 && digit >= 2 && distinct >= 16 && changes*3 >= len(part)-1 && lower*2 <= lowerRuns*5
}

// jwt matches header.payload.signature, each base64url, the first two
// JSON objects (so starting eyJ); i..j is the header's run.
func jwt(s string, i, j int) (int, bool) {
	if !strings.HasPrefix(s[i:j], "eyJ") || j-i < 10 {
		return 0, false
	}
	end := j
	for part := 0; part < 2; part++ {
		if end >= len(s) || s[end] != '.' {
			return 0, false
		}
		k := end + 1
		for k < len(s) && isTokenChar(s[k]) {
			k++
		}
		if k-end-1 < 10 || (part == 0 && !strings.HasPrefix(s[end+1:], "eyJ")) {
			return 0, false
		}
		end = k
	}
	return end, true
}

const (
	pemBegin = "-----BEGIN "
	pemEnd   = "-----END "
)

// pemBlock matches -----BEGIN … PRIVATE KEY----- … -----END …-----,
// starting at i.
func pemBlock(s string, i int, st *passState) (int, bool) {
	rest := s[i:]
	if !strings.HasPrefix(rest, pemBegin) {
		return 0, false
	}
	if st.lastPEMEnd == unknown {
		st.lastPEMEnd = strings.LastIndex(s, pemEnd)
	}
	if st.lastPEMEnd < i {
		return 0, false
	}
	head := rest[:min(len(rest), 64)]
	dashes := strings.Index(head[len(pemBegin):], "-----")
	if dashes < 0 || !strings.HasSuffix(head[:len(pemBegin)+dashes], "PRIVATE KEY") {
		return 0, false
	}
	// The nearest end; each byte is scanned here once per pass, as the
	// block found is replaced whole and the search goes on after it.
	e := strings.Index(rest, pemEnd)
	if e < 0 {
		return 0, false
	}
	tail := strings.Index(rest[e+len(pemEnd):], "-----")
	if tail < 0 || tail > 64 {
		return 0, false
	}
	return i + e + len(pemEnd) + tail + len("-----"), true
}
