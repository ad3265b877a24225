package account

import (
	"slices"
	"strings"
	"unicode"

	"golang.org/x/text/cases"
	"golang.org/x/text/unicode/norm"

	"github.com/gatehouse-auth/gatehouse/failure"
)

// commonWords are the words of the passwords tried first, once their
// digits and signs are taken away ("Password1234!", "qwerty123456",
// "Summer2024!").
var commonWords = []string{"password", "passwort", "motdepasse", "qwerty", "qwertz", "azerty", "letmein", "welcome",
	"iloveyou", "admin", "administrator", "changeme", "secret", "test", "default", "abc", "abcdef", "gatehouse", "connector",
	"spring", "summer", "autumn", "winter"}

// leet are the letters a digit or sign stands for in a word written with
// them ("P@ssw0rd").
var leet = map[rune]string{'0': "o", '1': "il", '3': "e", '4': "a", '5': "s", '7': "t", '@': "a", '$': "s", '!': "i"}

// MinRandomNumber is how long a password without a letter must be: 20
// random digits are some 66 bits, a PIN or a date repeated far fewer.
const MinRandomNumber = 20

// Guessable reports whether pw is among the first guesses: a number alone
// (digits and signs, no letter) shorter than MinRandomNumber characters
// besides spaces or made of one shorter part repeated
// ("12345678901234567890"), or made of commonWords, or of one of names
// (an account's username, whole and each run of its letters: "john" and
// "smith" of "john.smith"), once, repeated or joined, with only digits,
// signs and spaces besides, a digit or sign standing for a letter too
// ("P@ssw0rd") — compared NFKC-normalised and case-folded
// ("ＰＡＳＳＷＯＲＤ1234", "Paßwort12345", "AdminPassword1",
// "AliceAlice1" for alice, "Smith2024!" for john.smith).
func Guessable(pw string, names ...string) bool {
	if len(pw) > MaxPasswordLength {
		return false // refused for its length (Service.CreateUser), not worth the work here
	}
	runes := []rune(folded(pw))
	if !slices.ContainsFunc(runes, isLetter) {
		number := []rune(strings.Join(strings.Fields(string(runes)), ""))
		return len(number) < MinRandomNumber || repeated(number)
	}
	if madeOf(runes, commonWords) {
		return true
	}
	for _, name := range names {
		parts := strings.FieldsFunc(folded(name), func(r rune) bool { return !isLetter(r) })
		if len(parts) > 0 && madeOf(runes, append(parts, strings.Join(parts, ""))) {
			return true
		}
	}
	return false
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

// madeOf reports whether every letter of s belongs to one of words, which
// follow each other with only other characters between them; a digit or
// sign in a word stands for its letter (leet).
func madeOf(s []rune, words []string) bool {
	reached := make([]bool, len(s)+1) // reached[i]: s[:i] is so made
	reached[0] = true
	for i := range s {
		if !reached[i] {
			continue
		}
		if !isLetter(s[i]) {
			reached[i+1] = true
		}
		for _, word := range words {
			if n := matched(s[i:], word); n > 0 {
				reached[i+n] = true
			}
		}
	}
	return reached[len(s)]
}

// matched is the length in runes of word at the start of s, a digit or
// sign of s standing for the letter it looks like; 0 when s does not
// start with word.
func matched(s []rune, word string) int {
	n := 0
	for _, w := range word {
		if n == len(s) || s[n] != w && !strings.ContainsRune(leet[s[n]], w) {
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
		return failure.Invalid("password is among the first guesses (a number alone, or common words or the username with " +
			"digits and signs around them): use a passphrase of a few unrelated words, or a generated password")
	}
	return nil
}
