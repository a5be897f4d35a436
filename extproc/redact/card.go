package redact

// nextNumber finds the next payment card or phone number (phone.go).
//
// A payment card number is 13 to 19 digits, written without
// separators or in groups of 3 to 6 split by single spaces or single
// dashes (all the same), starting with 2 to 6 (the networks' ranges:
// Mastercard 2 and 5, Amex, Diners and JCB 3, Visa 4, Discover, Maestro
// and UnionPay 6), with a valid Luhn check digit. Not matched: numbers of
// other lengths or starting digits, those that fail the Luhn check (nine
// in ten random numbers), and digits mixed with other separators (dates,
// versions, IP addresses).
func nextNumber(s string, from int) (start, end int, k Kind, ok bool) {
	var r numberRun
	for nextNumberRun(s, from, &r) {
		switch {
		case isCard(&r):
			return r.start, r.end, Card, true
		case isPhone(&r):
			return r.start, r.end, Phone, true
		}
		from = r.end
	}
	return 0, 0, 0, false
}

func isCard(r *numberRun) bool {
	n := r.nd
	if r.plus || r.parenGroup >= 0 || n < 13 || n > 19 || r.digits[0] < '2' || r.digits[0] > '6' {
		return false
	}
	if r.ng > 1 {
		if !r.sameSeparators(' ') && !r.sameSeparators('-') {
			return false
		}
		for _, g := range r.groups[:r.ng] {
			if g < 3 || g > 6 {
				return false
			}
		}
	}
	return luhn(r.digits[:n])
}

// luhn checks the Luhn (mod 10) check digit of digits.
func luhn(digits []byte) bool {
	sum := 0
	double := false
	for i := len(digits) - 1; i >= 0; i-- {
		d := int(digits[i] - '0')
		if double {
			d *= 2
			if d > 9 {
				d -= 9
			}
		}
		sum += d
		double = !double
	}
	return sum%10 == 0
}
