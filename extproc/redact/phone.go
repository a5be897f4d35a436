package redact

// isPhone matches a phone number in one of the forms people write them:
//
//   - international: + and 8 to 15 digits, in groups split by single
//     spaces, dashes, dots or a parenthesised area code ("+49 30 1234567",
//     "+1 (555) 123-4567", "+447911123456");
//   - North American: 3-3-4 digits, optionally after a 1, split by single
//     spaces, dashes or dots, or with the area code in parentheses
//     ("(555) 123-4567", "555-123-4567", "1 555 123 4567");
//   - national with a trunk 0: 9 to 12 digits starting with 0 (13 to 15
//     starting with 00), in at least two groups split by spaces, dashes
//     or slashes ("030 1234567", "020 7946 0958", "0171/1234567"), or
//     French pairs split by dots ("06.12.34.56.78").
//
// Digits without separators and without + are not matched (they are as
// often order numbers or ids), nor are dates ("2024-01-15",
// "01.02.2024"), times, versions, IP addresses, amounts or ISBNs.
func isPhone(r *numberRun) bool {
	n := r.nd
	switch {
	case r.plus:
		return n >= 8 && n <= 15 && !r.hasSeparator('/')
	case isNANP(r):
		return true
	case r.digits[0] == '0' && r.ng >= 2 && r.parenGroup <= 0:
		most := 12
		if r.digits[1] == '0' {
			most = 15
		}
		if n < 9 || n > most {
			return false
		}
		if r.hasSeparator('.') {
			return frenchPairs(r)
		}
		return true
	}
	return false
}

// isNANP matches 3-3-4 digits, optionally after a country code 1, the
// area code optionally in parentheses.
func isNANP(r *numberRun) bool {
	g, seps, area := r.groups[:r.ng], r.seps[:max(r.ng-1, 0)], 0
	if len(g) == 4 && g[0] == 1 && r.digits[0] == '1' {
		g, seps, area = g[1:], seps[1:], 1
	}
	if len(g) != 3 || g[0] != 3 || g[1] != 3 || g[2] != 4 || seps[1] == '/' || seps[1] == ')' {
		return false
	}
	switch r.parenGroup {
	case area:
		return seps[0] == ')'
	case -1:
		return seps[0] == seps[1]
	}
	return false
}

// frenchPairs matches 0X.XX.XX.XX.XX.
func frenchPairs(r *numberRun) bool {
	if r.ng != 5 || !r.sameSeparators('.') {
		return false
	}
	for _, g := range r.groups[:r.ng] {
		if g != 2 {
			return false
		}
	}
	return true
}
