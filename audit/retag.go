package audit

import (
	"bytes"
	"crypto/subtle"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
)

// RetagSpill tags the lines of the spill file path again for a keystore
// rekey: each line whose tag verifies under old gets its tag under next;
// lines under next already (a run again) and lines under neither (set
// aside at the next start, as before) are kept as they are. The file is
// replaced atomically (a new file renamed over it). It returns how many
// lines it tagged again; a missing file has none.
func RetagSpill(path string, old, next SpillTagger) (int, error) {
	raw, err := os.ReadFile(path) //nolint:gosec // G304: a spill file in the data_dir the operator names
	if errors.Is(err, fs.ErrNotExist) {
		return 0, nil
	}
	if err != nil {
		return 0, err
	}
	var out bytes.Buffer
	n := 0
	for rest := raw; len(rest) > 0; {
		line := rest
		if i := bytes.IndexByte(rest, '\n'); i >= 0 {
			line, rest = rest[:i+1], rest[i+1:]
		} else {
			rest = nil
		}
		p, tag, ok := decodeSpillLine(line)
		if ok && subtle.ConstantTimeCompare([]byte(tag), []byte(old.lineTag(p.key, p.raw))) == 1 {
			line, _ = json.Marshal(spillLine{Key: p.key, Event: p.raw, Tag: next.lineTag(p.key, p.raw)})
			line = append(line, '\n')
			n++
		}
		out.Write(line)
	}
	if n == 0 {
		return 0, nil
	}
	tmp := path + ".rekey"
	if err := os.Remove(tmp); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return 0, err
	}
	f, err := os.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600) //nolint:gosec // G304: beside the spill file, never over an existing one
	if err != nil {
		return 0, fmt.Errorf("audit spill file %s: %w", path, err)
	}
	if _, err := f.Write(out.Bytes()); err != nil {
		f.Close()
		return 0, err
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return 0, err
	}
	if err := f.Close(); err != nil {
		return 0, err
	}
	if err := os.Rename(tmp, path); err != nil {
		return 0, fmt.Errorf("audit spill file %s: %w", path, err)
	}
	if d, err := os.Open(filepath.Dir(path)); err == nil {
		_ = d.Sync()
		d.Close()
	}
	return n, nil
}
