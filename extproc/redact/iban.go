package redact

// nextIBAN finds an International Bank Account Number: the code of a
// country in SWIFT's IBAN registry, two check digits and the account,
// written in capitals without spaces or in groups split by single spaces
// ("DE89 3704 0044 0532 0130 00"), exactly as long as that country's IBANs,
// whose ISO 7064 mod-97 check gives 1. Not matched: lower-case IBANs,
// countries without IBANs, and anything failing the check (96 in 97 random
// strings of the right shape).
func nextIBAN(s string, from int) (int, int, bool) {
	var buf [34]byte
	for i := from; i+4 <= len(s); i++ {
		if !isUpper(s[i]) || !isUpper(s[i+1]) || !isDigit(s[i+2]) || !isDigit(s[i+3]) || (i > 0 && isAlnum(s[i-1])) {
			continue
		}
		want := ibanLengths[s[i:i+2]]
		if want == 0 {
			continue
		}
		// Collect characters, across single spaces, up to the country's
		// length.
		n, j, end := 0, i, i
		for j < len(s) && n < want {
			c := s[j]
			if isUpper(c) || isDigit(c) {
				buf[n] = c
				n++
				j++
				end = j
				continue
			}
			if c == ' ' && j+1 < len(s) && (isUpper(s[j+1]) || isDigit(s[j+1])) && n > 0 {
				j++
				continue
			}
			break
		}
		if n != want {
			continue
		}
		// The IBAN must end where a word ends.
		if end < len(s) && isAlnum(s[end]) {
			continue
		}
		if mod97(buf[:n]) == 1 {
			return i, end, true
		}
	}
	return 0, 0, false
}

// mod97 computes ISO 7064 MOD 97-10 over the IBAN rearranged: the first
// four characters moved to the end, letters as 10 to 35.
func mod97(iban []byte) int {
	r := 0
	add := func(c byte) {
		if isDigit(c) {
			r = (r*10 + int(c-'0')) % 97
			return
		}
		r = (r*100 + int(c-'A'+10)) % 97
	}
	for _, c := range iban[4:] {
		add(c)
	}
	for _, c := range iban[:4] {
		add(c)
	}
	return r
}

// ibanLengths are the IBAN lengths of the countries in SWIFT's IBAN
// registry.
var ibanLengths = map[string]int{
	"AD": 24, "AE": 23, "AL": 28, "AT": 20, "AZ": 28, "BA": 20, "BE": 16, "BG": 22, "BH": 22, "BR": 29,
	"BY": 28, "CH": 21, "CR": 22, "CY": 28, "CZ": 24, "DE": 22, "DK": 18, "DO": 28, "EE": 20, "EG": 29,
	"ES": 24, "FI": 18, "FO": 18, "FR": 27, "GB": 22, "GE": 22, "GI": 23, "GL": 18, "GR": 27, "GT": 28,
	"HR": 21, "HU": 28, "IE": 22, "IL": 23, "IQ": 23, "IS": 26, "IT": 27, "JO": 30, "KW": 30, "KZ": 20,
	"LB": 28, "LC": 32, "LI": 21, "LT": 20, "LU": 20, "LV": 21, "MC": 27, "MD": 24, "ME": 22, "MK": 19,
	"MR": 27, "MT": 31, "MU": 30, "NL": 18, "NO": 15, "PK": 24, "PL": 28, "PS": 29, "PT": 25, "QA": 29,
	"RO": 24, "RS": 22, "SA": 24, "SC": 31, "SE": 24, "SI": 19, "SK": 24, "SM": 27, "ST": 25, "SV": 28,
	"TL": 23, "TN": 24, "TR": 26, "UA": 29, "VA": 22, "VG": 24, "XK": 20,
	"BI": 27, "DJ": 27, "LY": 25, "RU": 33, "SD": 18,
}
