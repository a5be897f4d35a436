package redact

import "strings"

// nextEmail finds an address local@domain.tld: a local part of letters,
// digits and . _ % + -, a domain of at least two labels, the last of
// letters only (2-24 of them). Not matched: user@localhost (no dot),
// decorators and handles (@Override, @types/node: no local part), version
// pins (pkg@1.2.3: numeric last label) and file names with a density
// suffix (icon@2x.png: a file extension is not a top-level domain).
func nextEmail(s string, from int) (int, int, bool) {
	// Nothing before from: it is the end of the previous match.
	from0 := from
	for {
		at := strings.IndexByte(s[from:], '@')
		if at < 0 {
			return 0, 0, false
		}
		at += from
		from = at + 1
		start := at
		for start > from0 && isLocalChar(s[start-1]) {
			start--
		}
		// The local part neither starts nor ends with a dot.
		for start < at && s[start] == '.' {
			start++
		}
		if start == at || s[at-1] == '.' {
			continue
		}
		end, ok := domainEnd(s, at+1)
		if !ok {
			continue
		}
		return start, end, true
	}
}

func isLocalChar(b byte) bool {
	return isAlnum(b) || b == '.' || b == '_' || b == '%' || b == '+' || b == '-'
}

// domainEnd reads labels separated by dots from i and returns the end of
// the domain when it is one.
func domainEnd(s string, i int) (int, bool) {
	end := i
	labels, lastStart := 0, i
	for {
		j := end
		for j < len(s) && (isAlnum(s[j]) || s[j] == '-') {
			j++
		}
		if j == end || s[end] == '-' || s[j-1] == '-' {
			break
		}
		labels++
		lastStart, end = end, j
		if j+1 < len(s) && s[j] == '.' && isAlnum(s[j+1]) {
			end = j + 1
			continue
		}
		break
	}
	if labels < 2 {
		return 0, false
	}
	tld := s[lastStart:end]
	if len(tld) < 2 || len(tld) > 24 || fileExtensions[strings.ToLower(tld)] {
		return 0, false
	}
	for k := 0; k < len(tld); k++ {
		if !isUpper(tld[k]) && !isLower(tld[k]) {
			return 0, false
		}
	}
	return end, true
}

// fileExtensions are endings of file names that follow an @ in names such
// as icon@2x.png; none is a top-level domain in use for mail.
var fileExtensions = map[string]bool{
	"png": true, "jpg": true, "jpeg": true, "gif": true, "svg": true, "webp": true, "bmp": true, "ico": true,
	"css": true, "js": true, "ts": true, "json": true, "txt": true, "pdf": true, "html": true,
}
