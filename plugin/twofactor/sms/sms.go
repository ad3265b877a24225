// Package sms delivers Gatehouse's text messages (one-time codes and
// enrolment links). A Sender is either File, which appends each message as
// a JSON line {"to","message"} to a file (development and tests), or
// Webhook, which POSTs the same JSON to an SMS gateway with configurable
// headers, timeout and retries.
//
// Messages carry one-time codes: no sender ever logs or returns a
// message's text, and errors name neither the recipient nor the content.
package sms

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"sync"
)

// Message is one text message; its JSON form is what File writes and what
// Webhook posts.
type Message struct {
	// To is the recipient's mobile number.
	To string `json:"to"`
	// Message is the text.
	Message string `json:"message"`
}

// Sender delivers text messages.
type Sender interface {
	// Send delivers m or returns an error that names neither the
	// recipient nor the text.
	Send(ctx context.Context, m Message) error
}

// File appends each message as one JSON line to a file (created 0600). It
// opens the file for every message, so the file may be rotated or removed
// at any time.
type File struct {
	path string
	mu   sync.Mutex
}

// NewFile returns a File sender writing to path.
func NewFile(path string) *File { return &File{path: path} }

// Path is the file the sender appends to.
func (f *File) Path() string { return f.path }

// Send implements Sender.
func (f *File) Send(_ context.Context, m Message) error {
	line, err := json.Marshal(m)
	if err != nil {
		return fmt.Errorf("encoding SMS: %v", err)
	}
	line = append(line, '\n')
	f.mu.Lock()
	defer f.mu.Unlock()
	fh, err := os.OpenFile(f.path, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o600)
	if err != nil {
		return fmt.Errorf("SMS file sender: %v", err)
	}
	if _, err := fh.Write(line); err != nil {
		fh.Close()
		return fmt.Errorf("SMS file sender: writing %s: %v", f.path, err)
	}
	return fh.Close()
}
