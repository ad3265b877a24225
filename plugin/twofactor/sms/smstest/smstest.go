// Package smstest is an sms.Sender for tests: it keeps the messages it is
// given, for the test to read the codes and links they carry.
package smstest

import (
	"context"
	"regexp"
	"sync"
	"testing"

	"github.com/gatehouse-auth/gatehouse/plugin/twofactor/sms"
)

// Recorder is an sms.Sender that keeps every message it sends, or fails
// them all while an error is set (Fail). Its zero value is ready to use,
// from any goroutine.
type Recorder struct {
	mu   sync.Mutex
	msgs []sms.Message
	err  error
}

var _ sms.Sender = (*Recorder)(nil)

// Send keeps m, or answers the error set by Fail without keeping it.
func (r *Recorder) Send(_ context.Context, m sms.Message) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.err != nil {
		return r.err
	}
	r.msgs = append(r.msgs, m)
	return nil
}

// Fail makes every Send from now on answer err, as a gateway that is down
// does; a nil err makes Send keep messages again.
func (r *Recorder) Fail(err error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.err = err
}

// Messages returns the messages sent so far, oldest first (a copy).
func (r *Recorder) Messages() []sms.Message {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]sms.Message(nil), r.msgs...)
}

// Len is the number of messages sent so far.
func (r *Recorder) Len() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.msgs)
}

// Last returns the latest message sent, or the zero Message when none was.
func (r *Recorder) Last() sms.Message {
	r.mu.Lock()
	defer r.mu.Unlock()
	if len(r.msgs) == 0 {
		return sms.Message{}
	}
	return r.msgs[len(r.msgs)-1]
}

// codeInText is a one-time code in a message's text: six digits standing
// alone.
var codeInText = regexp.MustCompile(`\b(\d{6})\b`)

// LastCode returns the one-time code (six digits) in the latest message
// sent; it fails t when no message was sent or the latest holds no code.
func (r *Recorder) LastCode(t testing.TB) string {
	t.Helper()
	r.mu.Lock()
	defer r.mu.Unlock()
	if len(r.msgs) == 0 {
		t.Fatal("no SMS was sent")
	}
	text := r.msgs[len(r.msgs)-1].Message
	m := codeInText.FindStringSubmatch(text)
	if m == nil {
		t.Fatalf("no code in %q", text)
	}
	return m[1]
}
