package redact

// numberRun is a run of digit groups separated by single separators, as
// card and phone numbers are written: "4111 1111 1111 1111",
// "+49 30 1234567", "+1 (555) 123-4567". It lives on the stack: fixed
// arrays, no allocation.
type numberRun struct {
	start, end int // the span, from the + or ( or first digit to the last digit or )
	nd, ng     int
	digits     [maxRunDigits]byte // digits[:nd], the digits alone
	groups     [maxRunDigits]int  // groups[:ng], each digit group's length
	seps       [maxRunDigits]byte // seps[:ng-1], the separator before each later group; ')' after a parenthesised group
	plus       bool               // the run starts with +
	parenGroup int                // the index of the group in parentheses, or -1
}

// maxRunDigits bounds a run's digits: nothing longer is a card or phone
// number, and the bound keeps long digit strings cheap.
const maxRunDigits = 24

// nextNumberRun finds the next run at or after from that starts on a
// boundary (not after a letter, a digit, or a digit and a dot, dash, comma
// or slash, which would make it the tail of a longer number or word).
func nextNumberRun(s string, from int, r *numberRun) bool {
	for i := from; i < len(s); i++ {
		b := s[i]
		if !isDigit(b) && b != '+' && b != '(' {
			continue
		}
		if i > 0 && (isAlnum(s[i-1]) || s[i-1] == '_') {
			// Skip the rest of this word or number.
			for i+1 < len(s) && (isAlnum(s[i+1]) || s[i+1] == '_') {
				i++
			}
			continue
		}
		if i > 1 && isNumberJoin(s[i-1]) && isDigit(s[i-2]) {
			continue
		}
		if readRun(s, i, r) {
			return true
		}
		// Nothing inside a run that is not a number is one either (the
		// tail of a too-long number is not a phone number).
		i = max(i, r.end-1)
	}
	return false
}

// readRun reads the run starting at i into r; false when there is none.
func readRun(s string, i int, r *numberRun) bool {
	r.start, r.end, r.nd, r.ng, r.plus, r.parenGroup = i, i, 0, 0, false, -1
	j := i
	if s[j] == '+' {
		r.plus = true
		j++
	}
	for {
		open := false
		if j < len(s) && s[j] == '(' && r.parenGroup < 0 && r.ng < 2 {
			open = true
			j++
		}
		g := j
		for j < len(s) && isDigit(s[j]) && r.nd < maxRunDigits {
			r.digits[r.nd] = s[j]
			r.nd++
			j++
		}
		if j == g {
			return false
		}
		r.groups[r.ng] = j - g
		r.ng++
		k, sep := j, byte(0)
		if open {
			if k >= len(s) || s[k] != ')' {
				return false
			}
			r.parenGroup = r.ng - 1
			k++
			sep = ')'
			j = k
			if k < len(s) && (s[k] == ' ' || s[k] == '-') {
				k++
			}
		} else if k < len(s) && (s[k] == ' ' || s[k] == '-' || s[k] == '.' || s[k] == '/') {
			sep = s[k]
			k++
		}
		r.end = j
		if r.nd >= maxRunDigits || sep == 0 || k >= len(s) {
			break
		}
		if opensGroup := s[k] == '(' && r.parenGroup < 0 && r.ng < 2; !isDigit(s[k]) && !opensGroup {
			break
		}
		r.seps[r.ng-1] = sep
		j = k
	}
	// A run that goes on into a word ("123abc") or straight into another
	// number ("555+1234") is not a number.
	if r.end < len(s) && (isAlnum(s[r.end]) || s[r.end] == '_' || s[r.end] == '+' || s[r.end] == '(') {
		return false
	}
	// Nor one followed by a separator and more digits that it could not
	// take ("000 000,5": an amount), as a run is not taken from after one.
	return r.end+1 >= len(s) || !isNumberJoin(s[r.end]) || !isDigit(s[r.end+1])
}

// isNumberJoin are the characters between digits that make them one
// number, for the boundary of a run.
func isNumberJoin(b byte) bool {
	return b == '.' || b == '-' || b == ',' || b == '/'
}

// separators says whether every separator is sep.
func (r *numberRun) sameSeparators(sep byte) bool {
	for _, b := range r.seps[:max(r.ng-1, 0)] {
		if b != sep {
			return false
		}
	}
	return true
}

func (r *numberRun) hasSeparator(sep byte) bool {
	for _, b := range r.seps[:max(r.ng-1, 0)] {
		if b == sep {
			return true
		}
	}
	return false
}
