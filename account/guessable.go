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
// digits and signs are taken away ("Password1234!", "qwerty123456").
var commonWords = []string{"password", "passwort", "motdepasse", "qwerty", "qwertz", "azerty", "letmein", "welcome",
	"iloveyou", "admin", "administrator", "changeme", "secret", "test", "default", "abc", "abcdef", "gatehouse", "connector"}

// MinRandomNumber is how long a password without a letter must be: 20
// random digits are some 66 bits, a PIN or a date repeated far fewer.
const MinRandomNumber = 20

// Guessable reports whether pw is among the first guesses: a number alone
// (digits and signs, no letter, shorter than MinRandomNumber characters),
// or one of commonWords or of names (an account's username), once or
// repeated, with only digits, signs and spaces besides — compared
// NFKC-normalised and case-folded ("ＰＡＳＳＷＯＲＤ1234", "Paßwort12345",
// "AliceAlice1" for alice).
func Guessable(pw string, names ...string) bool {
	letters := lettersOf(pw)
	if letters == "" {
		return utf8.RuneCountInString(pw) < MinRandomNumber
	}
	if slices.Contains(commonWords, letters) {
		return true
	}
	for _, name := range names {
		if word := lettersOf(name); word != "" && strings.ReplaceAll(letters, word, "") == "" {
			return true
		}
	}
	return false
}

// lettersOf is s NFKC-normalised and case-folded, its letters (and their
// marks) alone.
func lettersOf(s string) string {
	var letters strings.Builder
	for _, r := range cases.Fold().String(norm.NFKC.String(s)) {
		if unicode.IsLetter(r) || unicode.Is(unicode.Mn, r) {
			letters.WriteRune(r)
		}
	}
	return letters.String()
}

// refuseGuessable refuses pw as the password of the account username when
// it is Guessable: with an online guess or two per account, a password
// sprayer tries these first on every name it knows, below any lockout.
func refuseGuessable(pw, username string) error {
	if Guessable(pw, username) {
		return failure.Invalid("password is among the first guesses (a number alone, or a common word or the username with " +
			"digits and signs around it): use a passphrase of a few unrelated words, or a generated password")
	}
	return nil
}
