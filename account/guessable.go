package account

import (
	"slices"
	"strings"
	"unicode"
	"unicode/utf8"

	"golang.org/x/text/cases"
	"golang.org/x/text/unicode/norm"

	"github.com/gatehouse-auth/gatehouse/failure"
)

// commonWords are the words of the passwords tried first, once their
// digits and signs are taken away ("Password1234!", "qwerty123456",
// "Summer2024!", "Welcome2Company"): the words of the lists sprayers
// start with, seasons, months and days, greetings, in the languages of
// the defaults above.
var commonWords = []string{"password", "passwort", "motdepasse", "pass", "qwerty", "qwertz", "azerty", "letmein", "welcome",
	"iloveyou", "love", "admin", "administrator", "changeme", "secret", "test", "default", "abc", "abcdef", "gatehouse", "connector",
	"login", "user", "guest", "root", "master", "access", "hello", "hallo", "bonjour", "company", "office", "service", "support",
	"computer", "internet", "monkey", "dragon", "football", "baseball", "soccer", "sunshine", "princess", "superman", "batman",
	"shadow", "trustno", "freedom", "whatever", "starwars", "spring", "summer", "autumn", "fall", "winter", "sommer", "herbst",
	"fruehling", "frühling", "printemps", "ete", "été", "automne", "hiver", "soleil", "january", "february", "march", "april", "may",
	"june", "july", "august", "september", "october", "november", "december", "monday", "tuesday", "wednesday", "thursday",
	"friday", "saturday", "sunday"}

// keyboardRuns are the rows and columns of common keyboards (QWERTY,
// QWERTZ, AZERTY) and the alphabet: three letters or more of one in a
// row, either way ("qwertyuiop", "asdf", "zaq1xsw2", "1q2w3e4r"), make a
// run, as guessable as a common word.
var keyboardRuns = []string{"qwertyuiop", "asdfghjkl", "zxcvbnm", "qwertzuiop", "yxcvbnm", "azertyuiop", "qsdfghjklm", "wxcvbn",
	"abcdefghijklmnopqrstuvwxyz", "qaz", "wsx", "edc", "rfv", "tgb", "yhn", "ujm", "qay", "zhn", "aqw", "zsx"}

// runsOf maps a letter to the places it has in keyboardRuns and their
// reverses.
var runsOf = func() map[rune][]runPlace {
	m := map[rune][]runPlace{}
	for _, run := range keyboardRuns {
		forward := []rune(run)
		backward := slices.Clone(forward)
		slices.Reverse(backward)
		for _, r := range [][]rune{forward, backward} {
			for i, c := range r {
				m[c] = append(m[c], runPlace{run: r, at: i})
			}
		}
	}
	return m
}()

// runPlace is a letter's place in a keyboard run.
type runPlace struct {
	run []rune
	at  int
}

// minRunLetters and minRepeatLetters are the fewest letters a keyboard
// run and a repeated part must have to count ("asd"; "aaaa", "haha").
const (
	minRunLetters    = 3
	minRepeatLetters = 4
	// maxRepeatPart is the longest part whose repeats count ("blah"
	// in "blahblahblah"), and maxRepeatRun how many letters one repeat
	// covers at most (a longer one is several, which bounds the work).
	maxRepeatPart = 4
	maxRepeatRun  = 64
	// minOtherLetters is the fewest letters a password with a common word
	// of minCommonWord letters or more must have besides it: "olga
	// password", "Welcome2Acme!" and "cat summer 2024" are guessed with a
	// short word list. (Not for keyboard runs and repeats, nor shorter
	// words, which a generated password holds by chance: "Hj7#kLm2pQ9z".)
	minOtherLetters = 5
	minCommonWord   = 4
)

// leet are the letters a digit or sign stands for in a word written with
// them ("P@ssw0rd").
var leet = map[rune]string{'0': "o", '1': "il", '3': "e", '4': "a", '5': "s", '7': "t", '@': "a", '$': "s", '!': "i"}

// MinRandomNumber is how long a password without a letter must be: 20
// random digits are some 66 bits, a PIN or a date repeated far fewer.
const MinRandomNumber = 20

// Guessable reports whether pw is among the first guesses: a number alone
// (digits and signs, no letter) shorter than MinRandomNumber characters
// besides spaces or made of one shorter part repeated
// ("12345678901234567890"); or made of commonWords, keyboard runs
// (keyboardRuns: "qwertyuiop", "1q2w3e4r"), a part of up to four letters
// repeated ("blahblahblah", "aaaaaaaa") and the parts of names (an
// account's username, whole, each run of its letters and their reverses:
// "john" and "smith" of "john.smith"), with only digits, signs and spaces
// besides, a digit or sign standing for a letter in a word too
// ("P@ssw0rd", "alice password" for alice); or a common word of four
// letters or more with fewer than five other letters ("olga password",
// "Welcome2Acme!") — compared
// NFKC-normalised and case-folded ("ＰＡＳＳＷＯＲＤ1234", "Paßwort12345",
// "AdminPassword1", "AliceAlice1" for alice, "Smith2024!" for john.smith).
// Its work grows linearly with pw's length.
func Guessable(pw string, names ...string) bool {
	if len(pw) > MaxPasswordLength {
		return false // refused for its length (Service.CreateUser), not worth the work here
	}
	runes := []rune(folded(pw))
	if !slices.ContainsFunc(runes, isLetter) {
		number := []rune(strings.Join(strings.Fields(string(runes)), ""))
		return len(number) < MinRandomNumber || repeated(number)
	}
	var parts []string
	for _, name := range names {
		p := strings.FieldsFunc(folded(name), func(r rune) bool { return !isLetter(r) })
		if len(p) == 0 {
			continue
		}
		parts = append(parts, strings.Join(p, ""))
		for _, part := range p {
			reversed := []rune(part)
			slices.Reverse(reversed)
			parts = append(parts, part, string(reversed))
		}
	}
	plain, common := uncovered(runes, parts)
	return plain == 0 || common < minOtherLetters
}

// folded is s NFKC-normalised and case-folded.
func folded(s string) string {
	return cases.Fold().String(norm.NFKC.String(s))
}

// isLetter reports whether r is a letter or a mark on one: an accent that
// NFKC cannot compose with its letter is part of the word, as a composed
// one is ("pássword" is no common word).
func isLetter(r rune) bool {
	return unicode.IsLetter(r) || unicode.Is(unicode.Mn, r)
}

// repeated reports whether s is one shorter part of it repeated, the
// last time perhaps in part.
func repeated(s []rune) bool {
	for period := 1; period <= len(s)/2; period++ {
		if slices.Equal(s[period:], s[:len(s)-period]) {
			return true
		}
	}
	return false
}

// uncovered returns the fewest letters of s that are no part of a common
// word, a keyboard run, a repeat or one of names (plain), and the fewest
// of the ways that use at least one common word of minCommonWord letters
// or more (common; more than len(s) for none): s is split into such pieces, which follow
// each other with only other characters between them, and letters of
// none (each costs one); a digit or sign in a word stands for its letter
// (leet).
func uncovered(s []rune, names []string) (plain, common int) {
	none := len(s) + 1
	// cost[i][c]: the fewest uncovered letters of s[:i], with (c == 1) or
	// without a common piece.
	cost := make([][2]int, len(s)+1)
	for i := range cost {
		cost[i] = [2]int{none, none}
	}
	cost[0][0] = 0
	reach := func(from, to, c, uncovered int) {
		if v := from + uncovered; v < cost[to][c] {
			cost[to][c] = v
		}
	}
	var named, commons []int // the ends of the pieces that start at i
	for i := range s {
		if cost[i][0] >= none && cost[i][1] >= none {
			continue
		}
		named, commons = named[:0], commons[:0]
		for _, word := range names {
			if n := matched(s[i:], word); n > 0 {
				named = append(named, i+n)
			}
		}
		eachCommon(s, i, func(end int, word bool) {
			if word {
				commons = append(commons, end)
			} else {
				named = append(named, end)
			}
		})
		letter := 0
		if isLetter(s[i]) {
			letter = 1
		}
		for c, from := range cost[i] {
			if from >= none {
				continue
			}
			reach(from, i+1, c, letter)
			for _, end := range named {
				reach(from, end, c, 0)
			}
			for _, end := range commons {
				reach(from, end, 1, 0)
			}
		}
	}
	return min(cost[len(s)][0], cost[len(s)][1]), cost[len(s)][1]
}

// eachCommon calls covered with the end of each common piece of s that
// starts at i: a common word (word when it has minCommonWord letters or
// more), a keyboard run (its letters perhaps apart, with one or two other
// characters between: "1q2w3e4r") or a part of up to maxRepeatPart
// letters repeated ("haha", "blahblah").
func eachCommon(s []rune, i int, covered func(end int, word bool)) {
	for _, word := range commonWords {
		if n := matched(s[i:], word); n > 0 {
			covered(i+n, n >= minCommonWord)
		}
	}
	for _, place := range runsOf[s[i]] {
		letters, j := 1, i+1
		for k := place.at + 1; k < len(place.run); k++ {
			skipped := 0
			for j < len(s) && !isLetter(s[j]) && skipped < 2 {
				j, skipped = j+1, skipped+1
			}
			if j == len(s) || s[j] != place.run[k] {
				break
			}
			j, letters = j+1, letters+1
			if letters >= minRunLetters {
				covered(j, false)
			}
		}
	}
	if !isLetter(s[i]) {
		return
	}
	for part := 1; part <= maxRepeatPart; part++ {
		j := i + part
		for j < len(s) && j-i < maxRepeatRun && isLetter(s[j]) && s[j] == s[j-part] {
			j++
			if n := j - i; n >= max(minRepeatLetters, 2*part) {
				covered(j, false)
			}
		}
	}
}

// matched is the length in runes of word at the start of s, a digit or
// sign of s standing for the letter it looks like; 0 when s does not
// start with word.
func matched(s []rune, word string) int {
	n := 0
	for _, w := range word {
		if n == len(s) || s[n] != w && (s[n] < utf8.RuneSelf && isLetter(s[n]) || !strings.ContainsRune(leet[s[n]], w)) {
			return 0
		}
		n++
	}
	return n
}

// refuseGuessable refuses pw as the password of the account username when
// it is Guessable: with an online guess or two per account, a password
// sprayer tries these first on every name it knows, below any lockout.
func refuseGuessable(pw, username string) error {
	if Guessable(pw, username) {
		return failure.Invalid("password is among the first guesses (a number alone; or common words, keyboard runs such as qwerty " +
			"or 1q2w3e, a few letters repeated or the username, with digits and signs around them or fewer than five other letters): " +
			"use a passphrase of a few unrelated words, or a generated password")
	}
	return nil
}
