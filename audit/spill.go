package audit

import (
	"bufio"
	"bytes"
	"crypto/subtle"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/gatehouse-auth/gatehouse/internal/diskfree"
)

// spill is the local, append-only file that keeps the events the store
// refused, so that a crash during a store outage loses none of them: each
// line is one event, with the key it will have in the store. Lines are
// appended a batch at a time with one fsync per batch; the file is emptied
// once the store holds them all, and read back by the next writer when it
// was not (replayed under the same keys, so an event written twice is
// stored once). It holds at most limit bytes; events beyond are not
// spilled, and counted.
type spill struct {
	path  string
	f     *os.File
	tag   SpillTagger
	size  int64
	limit int64
	// keepFree is the free space appends leave on the file's file
	// system (Options.SpillKeepFree).
	keepFree uint64
	// events is the number of events (lines) the file holds.
	events int
}

// spillLine is the JSON of one line of the spill file.
type spillLine struct {
	Key   string          `json:"key"`
	Event json.RawMessage `json:"event"`
	// Tag authenticates the line (SpillTagger), hex; empty without one.
	Tag string `json:"tag,omitempty"`
}

// SpillTagger authenticates a spill file's line: a MAC of the event's
// key and JSON under a key the writer keeps (the keystore's), so that
// events planted in the file by whoever may write to the data directory
// are not stored as the writer's own.
type SpillTagger func(key string, event []byte) []byte

// lineTag is the hex tag of a line, "" without a tagger.
func (t SpillTagger) lineTag(key string, event []byte) string {
	if t == nil {
		return ""
	}
	return hex.EncodeToString(t(key, event))
}

// openSpill opens (creating it 0600) the spill file at path and returns
// the events it holds, oldest first, how many bytes at its end it cut
// off (a last line cut short by a crash in the middle of an append, never
// synced, so its events were not yet kept, and whatever follows a line
// that does not decode) and how many lines it set aside for a tag that
// does not verify (with a tagger): those are appended to path plus
// ".rejected" for the operator to read, not stored (an earlier version's
// untagged lines among them, after an upgrade during a store outage).
func openSpill(path string, limit int64, keepFree uint64, tag SpillTagger) (s *spill, events []pending, cut int64, forged int, err error) {
	f, err := openSpillFile(path)
	if err != nil {
		return nil, nil, 0, 0, fmt.Errorf("audit spill file: %w", err)
	}
	// A file left readable to others (copied, restored from a backup)
	// is made private before events are appended to it.
	err = f.Chmod(0o600)
	var info os.FileInfo
	if err == nil {
		info, err = f.Stat()
	}
	var whole int64
	var rejected []byte
	if err == nil {
		events, whole, rejected, forged, err = readSpill(f, tag)
	}
	if err == nil && len(rejected) > 0 {
		err = appendRejected(path+".rejected", rejected)
	}
	if err == nil {
		err = f.Truncate(whole)
	}
	if err == nil {
		_, err = f.Seek(whole, io.SeekStart)
	}
	if err != nil {
		f.Close()
		return nil, nil, 0, 0, fmt.Errorf("audit spill file %s: %w", path, err)
	}
	return &spill{path: path, f: f, tag: tag, size: whole, limit: limit, keepFree: keepFree, events: len(events)}, events, info.Size() - whole, forged, nil
}

// readSpill decodes the lines of a spill file and returns their events,
// the length of the file's leading whole, valid lines, and those of them
// (and how many) whose tag does not verify (with tag set).
func readSpill(r io.Reader, tag SpillTagger) (events []pending, whole int64, rejected []byte, forged int, err error) {
	br := bufio.NewReader(r)
	for {
		line, err := br.ReadBytes('\n')
		if errors.Is(err, io.EOF) {
			return events, whole, rejected, forged, nil // a last line without '\n' was cut short
		}
		if err != nil {
			return nil, 0, nil, 0, err
		}
		p, lineTag, ok := decodeSpillLine(line)
		if !ok {
			return events, whole, rejected, forged, nil // the torn end of an append, and whatever followed it
		}
		whole += int64(len(line))
		if tag != nil && subtle.ConstantTimeCompare([]byte(lineTag), []byte(tag.lineTag(p.key, p.raw))) != 1 {
			rejected = append(rejected, line...)
			forged++
			continue
		}
		events = append(events, p)
	}
}

// appendRejected appends the spill file's lines that were not stored to
// the file path, created 0600, as openSpillFile opens the spill file.
func appendRejected(path string, lines []byte) error {
	f, err := openSpillFile(path)
	if err != nil {
		return err
	}
	defer f.Close()
	if _, err := f.Seek(0, io.SeekEnd); err != nil {
		return err
	}
	if _, err := f.Write(lines); err != nil {
		return err
	}
	return f.Sync()
}

// decodeSpillLine decodes one line, which must name an event key as
// eventKey makes them and hold an event with a time, and returns its tag.
func decodeSpillLine(line []byte) (pending, string, bool) {
	var l spillLine
	if err := json.Unmarshal(line, &l); err != nil || !validEventKey(l.Key) {
		return pending{}, "", false
	}
	var e struct {
		Time time.Time `json:"time"`
	}
	if err := json.Unmarshal(l.Event, &e); err != nil || e.Time.IsZero() {
		return pending{}, "", false
	}
	return pending{key: l.Key, raw: bytes.Clone(l.Event), time: e.Time}, l.Tag, true
}

// validEventKey reports whether key has eventKey's form: the prefix and
// 32 hex digits, with trimmableMark after the first 16 or not.
func validEventKey(key string) bool {
	h, ok := strings.CutPrefix(key, keyPrefix)
	if len(h) == 33 && h[16:17] == trimmableMark {
		h = h[:16] + h[17:]
	}
	if !ok || len(h) != 32 {
		return false
	}
	_, err := hex.DecodeString(h)
	return err == nil
}

// add appends events and syncs the file, and returns how many of them it
// could not keep (the file full, or failing).
func (s *spill) add(events []pending) (notKept int, err error) {
	var buf bytes.Buffer
	kept := 0
	for _, p := range events {
		line, _ := json.Marshal(spillLine{Key: p.key, Event: p.raw, Tag: s.tag.lineTag(p.key, p.raw)})
		if s.size+int64(buf.Len()+len(line)+1) > s.limit {
			break
		}
		buf.Write(line)
		buf.WriteByte('\n')
		kept++
	}
	if kept == 0 {
		return len(events), nil
	}
	if err := s.room(buf.Len()); err != nil {
		return len(events), err
	}
	if _, err := s.f.Write(buf.Bytes()); err != nil {
		_ = s.f.Truncate(s.size) // best effort: no torn line in the middle of the file
		_, _ = s.f.Seek(s.size, io.SeekStart)
		return len(events), err
	}
	s.size += int64(buf.Len())
	s.events += kept
	if err := s.f.Sync(); err != nil {
		return len(events), err
	}
	return len(events) - kept, nil
}

// spaceFree is diskfree.Free, replaced by tests.
var spaceFree = diskfree.Free

// room reports an error when appending n bytes would leave less than
// keepFree on the file's file system.
func (s *spill) room(n int) error {
	if s.keepFree == 0 {
		return nil
	}
	dir := filepath.Dir(s.path)
	free, known := spaceFree(dir)
	if !known || free >= s.keepFree+uint64(n) { //nolint:gosec // G115: a batch's length, never negative
		return nil
	}
	return fmt.Errorf("%d bytes free on the file system of %s: the spill file leaves %d MiB free there for the store", free, dir, s.keepFree>>20)
}

// clear empties the file: the store holds every event it had.
func (s *spill) clear() error {
	if s.size == 0 {
		return nil
	}
	if err := s.f.Truncate(0); err != nil {
		return err
	}
	if _, err := s.f.Seek(0, io.SeekStart); err != nil {
		return err
	}
	s.size, s.events = 0, 0
	return s.f.Sync()
}

// close closes the file, keeping what it holds for the next writer.
func (s *spill) close() error { return s.f.Close() }
