package badger

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	badgerdb "github.com/dgraph-io/badger/v4"
	"github.com/dgraph-io/badger/v4/options"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest/observer"

	"github.com/gatehouse-auth/gatehouse/storage"
	"github.com/gatehouse-auth/gatehouse/storage/storetest"
)

func open(t testing.TB, dir string) *Store {
	t.Helper()
	s, err := Open(dir, Options{})
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func TestConformance(t *testing.T) {
	storetest.Run(t, storetest.Backend{
		Open: func(t *testing.T) storage.Store { return open(t, filepath.Join(t.TempDir(), "db")) },
		Reopen: func(t *testing.T, s storage.Store) storage.Store {
			dir := s.(*Store).db.Opts().Dir
			if err := s.Close(); err != nil {
				t.Fatal(err)
			}
			return open(t, dir)
		},
	})
}

func TestSecondOpenOfSameDirFails(t *testing.T) {
	dir := t.TempDir()
	s := open(t, dir)
	defer s.Close()
	s2, err := Open(dir, Options{})
	if err == nil {
		s2.Close()
		t.Fatal("a second Open of a locked directory succeeded")
	}
	if !errors.Is(err, storage.ErrUnavailable) || !strings.Contains(err.Error(), dir) {
		t.Fatalf("second Open: %v; want ErrUnavailable naming the directory", err)
	}
}

func TestReservedAndOversizedKeysAreCallerErrors(t *testing.T) {
	s := open(t, t.TempDir())
	defer s.Close()
	ctx := t.Context()
	for _, key := range []string{"!badger!head", strings.Repeat("k", maxKeySize+1)} {
		err := s.Put(ctx, key, []byte("v"), 0)
		if err == nil || errors.Is(err, storage.ErrUnavailable) {
			t.Errorf("Put of a %d-byte key %.10q: %v; want a caller error", len(key), key, err)
		}
	}
	if err := s.Put(ctx, strings.Repeat("k", maxKeySize), []byte("v"), 0); err != nil {
		t.Fatalf("Put of a key of the maximum size: %v", err)
	}
}

func TestWritesAreSyncedAndInfoLogsDropped(t *testing.T) {
	core, logs := observer.New(zapcore.DebugLevel)
	s, err := Open(t.TempDir(), Options{Logger: zap.New(core)})
	if err != nil {
		t.Fatal(err)
	}
	if !s.db.Opts().SyncWrites {
		t.Error("SyncWrites is off: an acknowledged write could be lost in a crash")
	}
	if err := s.Put(t.Context(), "k", []byte("v"), 0); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	for _, e := range logs.All() {
		if e.Level < zapcore.WarnLevel {
			t.Errorf("Badger logged below warning level: %s %q", e.Level, e.Message)
		}
	}
	// Badger's logger is still called after open; make sure it is routed.
	logger{zap.New(core).Sugar()}.Warningf("disk %s\n", "slow")
	if got := logs.FilterMessage("disk slow").Len(); got != 1 {
		t.Fatalf("a Badger warning reached the zap logger %d times; want 1 (newline trimmed)", got)
	}
}

func TestCloseStopsEverything(t *testing.T) {
	before := runtime.NumGoroutine()
	s := open(t, t.TempDir())
	if err := s.Put(t.Context(), "k", []byte("v"), 0); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if d := time.Since(start); d > 10*time.Second {
		t.Errorf("Close took %v", d)
	}
	for deadline := time.Now().Add(10 * time.Second); runtime.NumGoroutine() > before; {
		if time.Now().After(deadline) {
			t.Fatalf("%d goroutines before Open, %d after Close", before, runtime.NumGoroutine())
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// crashDirEnv tells a re-executed test binary to be the process that is
// killed: it writes keys to the Badger database in that directory and
// reports each acknowledged write on stdout until it dies.
const crashDirEnv = "GATEHOUSE_BADGER_CRASH_DIR"

// TestAckedWritesSurviveKill kills a writing process with SIGKILL and
// checks that every write it had acknowledged is in the reopened database.
func TestAckedWritesSurviveKill(t *testing.T) {
	if dir := os.Getenv(crashDirEnv); dir != "" {
		writeUntilKilled(dir)
		return
	}
	if runtime.GOOS == "windows" {
		t.Skip("needs SIGKILL")
	}
	dir := t.TempDir()
	cmd := exec.Command(os.Args[0], "-test.run=^TestAckedWritesSurviveKill$")
	cmd.Env = append(os.Environ(), crashDirEnv+"="+dir)
	cmd.Stderr = os.Stderr
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })

	acked := -1
	lines := bufio.NewScanner(out)
	for lines.Scan() {
		n, ok := strings.CutPrefix(lines.Text(), "acked ")
		if !ok {
			continue
		}
		if acked, err = strconv.Atoi(n); err != nil {
			t.Fatalf("child output %q", lines.Text())
		}
		if acked == 150 {
			cmd.Process.Kill() // mid-stream: the child is writing k/151
		}
	}
	cmd.Wait()
	if acked < 150 {
		t.Fatalf("the writer died after %d acknowledged writes; want at least 150", acked+1)
	}

	s := open(t, dir)
	defer s.Close()
	for i := 0; i <= acked; i++ {
		got, err := s.Get(t.Context(), fmt.Sprintf("k/%04d", i))
		if err != nil || string(got) != strconv.Itoa(i) {
			t.Fatalf("acknowledged write %d of %d lost after kill -9: %q, %v", i, acked+1, got, err)
		}
	}
}

func writeUntilKilled(dir string) {
	s, err := Open(dir, Options{})
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(2)
	}
	ctx := context.Background()
	for i := 0; ; i++ {
		if err := s.Put(ctx, fmt.Sprintf("k/%04d", i), []byte(strconv.Itoa(i)), 0); err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(2)
		}
		fmt.Printf("acked %d\n", i)
	}
}

// TestReadsTablesWrittenCompressed: a database whose tables an earlier
// version wrote Snappy-compressed stays readable after the switch to
// uncompressed tables.
func TestReadsTablesWrittenCompressed(t *testing.T) {
	dir := t.TempDir()
	old, err := badgerdb.Open(badgerdb.DefaultOptions(dir).WithCompression(options.Snappy).WithLogger(nil))
	if err != nil {
		t.Fatal(err)
	}
	err = old.Update(func(txn *badgerdb.Txn) error {
		for i := range 2000 {
			if err := txn.Set(fmt.Appendf(nil, "user/%04d", i), []byte(strings.Repeat("compressible ", 20))); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := old.Close(); err != nil { // flushes the memtable into a compressed table
		t.Fatal(err)
	}
	if tables, _ := filepath.Glob(filepath.Join(dir, "*.sst")); len(tables) == 0 {
		t.Fatal("no table written: the test would not read a compressed table")
	}
	s := open(t, dir)
	defer s.Close()
	got, err := s.Get(context.Background(), "user/1999")
	if err != nil || string(got) != strings.Repeat("compressible ", 20) {
		t.Fatalf("Get from a Snappy table = %q, %v", got, err)
	}
}

// TestWritesWaitForFreeSpace: below MinFreeSpace free on the database's
// file system, writes fail as the store being unavailable, naming the
// directory, and reads go on; the start and the end of it are logged once
// each, and writes work again once space was freed. Without it, a write
// into Badger's memory-mapped log on a full file system ended the process
// with SIGBUS (seen with bin/caddy on an 8 MiB tmpfs).
func TestWritesWaitForFreeSpace(t *testing.T) {
	var free atomic.Uint64
	free.Store(MinFreeSpace)
	saved := freeSpace
	freeSpace = func(string) (uint64, bool) { return free.Load(), true }
	t.Cleanup(func() { freeSpace = saved })
	core, logs := observer.New(zapcore.InfoLevel)
	dir := t.TempDir()
	s, err := Open(dir, Options{Logger: zap.New(core)})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	ctx := t.Context()
	if err := s.Put(ctx, "kept", []byte("v"), 0); err != nil {
		t.Fatalf("a write with MinFreeSpace free: %v", err)
	}
	free.Store(MinFreeSpace - 1)
	for _, write := range []func() error{
		func() error { return s.Put(ctx, "k", []byte("v"), 0) },
		func() error { return s.Delete(ctx, "kept") },
		func() error { _, err := s.Incr(ctx, "n", 1, 0); return err },
		func() error { _, err := s.CompareAndSwap(ctx, "kept", []byte("v"), []byte("w"), 0); return err },
		func() error { return s.Batch(ctx, []storage.Op{{Kind: storage.OpPut, Key: "b", Value: []byte("v")}}) },
	} {
		if err := write(); !errors.Is(err, storage.ErrUnavailable) || !strings.Contains(err.Error(), dir) {
			t.Fatalf("a write with too little space: %v; want ErrUnavailable naming %s", err, dir)
		}
	}
	if v, err := s.Get(ctx, "kept"); err != nil || string(v) != "v" {
		t.Fatalf("a read with too little space: %q, %v; want the record", v, err)
	}
	// A compare-and-swap that finds another value writes nothing: the
	// start's check of the connector CA recorded before (create if
	// absent) failed Caddy's restart on a disk with under 64 MiB free.
	for _, old := range [][]byte{nil, []byte("w")} {
		if swapped, err := s.CompareAndSwap(ctx, "kept", old, []byte("x"), 0); swapped || err != nil {
			t.Fatalf("a compare-and-swap from %q that finds another value, with too little space: %t, %v; want false, nil", old, swapped, err)
		}
	}
	if s.Writable() {
		t.Fatal("Writable with too little space: true; want false (gatehouse_store_writable)")
	}
	if got, ok := s.FreeBytes(); !ok || got != MinFreeSpace-1 {
		t.Fatalf("FreeBytes: %d, %t; want %d", got, ok, MinFreeSpace-1)
	}
	if n := logs.FilterMessageSnippet("file system is (nearly) full").Len(); n != 1 {
		t.Fatalf("the lack of space was logged %d times; want once", n)
	}
	free.Store(MinFreeSpace)
	if !s.Writable() {
		t.Fatal("Writable once space was freed: false; want true")
	}
	if err := s.Put(ctx, "k", []byte("v"), 0); err != nil {
		t.Fatalf("a write once space was freed: %v", err)
	}
	if n := logs.FilterMessageSnippet("has room again").Len(); n != 1 {
		t.Fatalf("the space freed was logged %d times; want once", n)
	}
}

// stubFreeSpace makes freeSpace answer free's value for the test.
func stubFreeSpace(t *testing.T, free *atomic.Uint64) {
	saved := freeSpace
	freeSpace = func(string) (uint64, bool) { return free.Load(), true }
	t.Cleanup(func() { freeSpace = saved })
}

// closeWithin closes s, failing the test when Close takes more than a
// minute (Badger retrying a flush for ever).
func closeWithin(t *testing.T, s *Store) error {
	t.Helper()
	done := make(chan error, 1)
	go func() { done <- s.Close() }()
	select {
	case err := <-done:
		return err
	case <-time.After(time.Minute):
		t.Fatal("Close did not return within a minute")
		return nil
	}
}

// TestWritesRefusedOnceTheDirectoryIsGone: a data directory removed (or
// moved away, or replaced) under a running Caddy took every later write
// into files no start would read again, with a 201 for each and no log
// line (seen with bin/caddy: users and application keys created after
// `rm -rf data_dir` answered 201, and vanished at the restart), and a
// stop then never ended, Badger retrying its memtable's table once a
// second. Now those writes fail as the store unavailable (503), once
// logged, reads go on, and Close leaves the database open with a warning.
func TestWritesRefusedOnceTheDirectoryIsGone(t *testing.T) {
	core, logs := observer.New(zapcore.InfoLevel)
	dir := filepath.Join(t.TempDir(), "badger")
	s, err := Open(dir, Options{Logger: zap.New(core)})
	if err != nil {
		t.Fatal(err)
	}
	ctx := t.Context()
	if err := s.Put(ctx, "kept", []byte("v"), 0); err != nil {
		t.Fatal(err)
	}
	moved := dir + ".moved"
	if err := os.Rename(dir, moved); err != nil {
		t.Fatal(err)
	}
	for range 2 {
		if err := s.Put(ctx, "k", []byte("v"), 0); !errors.Is(err, storage.ErrUnavailable) || !strings.Contains(err.Error(), "removed or replaced") {
			t.Fatalf("a write once the directory was moved away: %v; want ErrUnavailable saying it was removed or replaced", err)
		}
	}
	if v, err := s.Get(ctx, "kept"); err != nil || string(v) != "v" {
		t.Fatalf("a read once the directory was moved away: %q, %v; want the record", v, err)
	}
	// Another directory under the name is no better.
	if err := os.Mkdir(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Incr(ctx, "n", 1, 0); !errors.Is(err, storage.ErrUnavailable) {
		t.Fatalf("a write with another directory under the name: %v; want ErrUnavailable", err)
	}
	if n := logs.FilterMessageSnippet("directory was removed or replaced while open").Len(); n != 1 {
		t.Fatalf("the directory's removal was logged %d times; want once", n)
	}
	// Moved back: writes resume.
	if err := os.Remove(dir); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(moved, dir); err != nil {
		t.Fatal(err)
	}
	if err := s.Put(ctx, "k", []byte("v"), 0); err != nil {
		t.Fatalf("a write once the directory is back: %v", err)
	}
	if n := logs.FilterMessageSnippet("can be written again: writes resume").Len(); n != 1 {
		t.Fatalf("the directory's return was logged %d times; want once", n)
	}
	// A stop with the directory gone returns, leaving the database open.
	if err := os.Rename(dir, moved); err != nil {
		t.Fatal(err)
	}
	if err := closeWithin(t, s); !errors.Is(err, storage.ErrUnavailable) {
		t.Fatalf("Close with the directory gone: %v; want ErrUnavailable", err)
	}
	if n := logs.FilterMessageSnippet("left open, not closed").Len(); n != 1 {
		t.Fatalf("the database left open was logged %d times; want once", n)
	}
}

// denyWrites makes the directory check (dirWritable) fail with why while
// the flag it returns is set, until the test ends.
func denyWrites(t *testing.T, why string) *atomic.Bool {
	var denied atomic.Bool
	saved := dirWritable
	dirWritable = func(string) error {
		if denied.Load() {
			return &os.PathError{Op: "access", Path: "dir", Err: errors.New(why)}
		}
		return nil
	}
	t.Cleanup(func() { dirWritable = saved })
	return &denied
}

// TestWritesRefusedWhileTheDirectoryCannotBeWritten: a data directory
// on a file system remounted read-only, or whose permissions were taken
// away, refuses writes (503), logged once, until it can be written again;
// before, writes went on into the open memtable until it was full, then
// hung, since Badger cannot write its table.
func TestWritesRefusedWhileTheDirectoryCannotBeWritten(t *testing.T) {
	denied := denyWrites(t, "read-only file system")
	core, logs := observer.New(zapcore.InfoLevel)
	s, err := Open(t.TempDir(), Options{Logger: zap.New(core)})
	if err != nil {
		t.Fatal(err)
	}
	ctx := t.Context()
	if err := s.Put(ctx, "kept", []byte("v"), 0); err != nil {
		t.Fatal(err)
	}
	denied.Store(true)
	for range 2 {
		if err := s.Batch(ctx, []storage.Op{{Kind: storage.OpPut, Key: "b", Value: []byte("v")}}); !errors.Is(err, storage.ErrUnavailable) ||
			!strings.Contains(err.Error(), "read-only file system") {
			t.Fatalf("a write to a directory that cannot be written: %v; want ErrUnavailable with the reason", err)
		}
	}
	if v, err := s.Get(ctx, "kept"); err != nil || string(v) != "v" {
		t.Fatalf("a read: %q, %v; want the record", v, err)
	}
	if n := logs.FilterMessageSnippet("cannot be written (a read-only file system").Len(); n != 1 {
		t.Fatalf("the directory not writable was logged %d times; want once", n)
	}
	denied.Store(false)
	if err := s.Put(ctx, "k", []byte("v"), 0); err != nil {
		t.Fatalf("a write once the directory can be written: %v", err)
	}
	if n := logs.FilterMessageSnippet("can be written again: writes resume").Len(); n != 1 {
		t.Fatalf("the directory writable again was logged %d times; want once", n)
	}
	if err := closeWithin(t, s); err != nil {
		t.Fatal(err)
	}
}

// TestOpenAndCloseNeedRoomForTheirTable: Badger writes a table out of
// its memtable at Close, and out of the log a killed process left at
// Open, through a memory-mapped file: on a full file system, a SIGBUS
// (seen with bin/caddy on a full 100 MiB tmpfs: `kill -TERM` ended in
// `table.CreateTable`, and the next start in `openMemTable`). Now Close
// leaves the database open, with its log (the write is kept, as the copy
// shows), and Open refuses with the bytes free; with room for the table
// (under MinFreeSpace still), Open works and finds the write.
func TestOpenAndCloseNeedRoomForTheirTable(t *testing.T) {
	var free atomic.Uint64
	free.Store(MinFreeSpace)
	stubFreeSpace(t, &free)
	core, logs := observer.New(zapcore.InfoLevel)
	dir := t.TempDir()
	s, err := Open(dir, Options{Logger: zap.New(core)})
	if err != nil {
		t.Fatal(err)
	}
	ctx := t.Context()
	if err := s.Put(ctx, "kept", []byte("v"), 0); err != nil {
		t.Fatal(err)
	}
	free.Store(flushMargin - 1)
	if err := closeWithin(t, s); !errors.Is(err, storage.ErrUnavailable) || !strings.Contains(err.Error(), "bytes free") {
		t.Fatalf("Close with no room for a table: %v; want ErrUnavailable naming the bytes free", err)
	}
	if n := logs.FilterMessageSnippet("left open, not closed").Len(); n != 1 {
		t.Fatalf("the database left open was logged %d times; want once", n)
	}
	// What a start after this stop finds: the files as they are.
	copied := sparseCopy(t, dir)
	for _, f := range []uint64{0, flushMargin - 1} {
		free.Store(f)
		if s2, err := Open(copied, Options{}); !errors.Is(err, storage.ErrUnavailable) || !strings.Contains(err.Error(), "bytes free") {
			if err == nil {
				s2.Close()
			}
			t.Fatalf("Open with %d bytes free and a log to replay: %v; want ErrUnavailable naming the bytes free", f, err)
		}
	}
	free.Store(MinFreeSpace / 2)
	s2, err := Open(copied, Options{})
	if err != nil {
		t.Fatalf("Open with room for the table, under MinFreeSpace: %v", err)
	}
	defer s2.Close()
	if v, err := s2.Get(ctx, "kept"); err != nil || string(v) != "v" {
		t.Fatalf("the write acknowledged before the stop: %q, %v; want it replayed", v, err)
	}
}

// sparseCopy copies the files of the database in dir (but its lock) to a
// new directory, leaving holes where they hold zeros, as Badger's own
// files do: the copy of a stopped process's database.
func sparseCopy(t *testing.T, dir string) string {
	t.Helper()
	copied := t.TempDir()
	files, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range files {
		if f.Name() == "LOCK" {
			continue
		}
		data, err := os.ReadFile(filepath.Join(dir, f.Name()))
		if err != nil {
			t.Fatal(err)
		}
		out, err := os.OpenFile(filepath.Join(copied, f.Name()), os.O_CREATE|os.O_WRONLY, 0o600)
		if err != nil {
			t.Fatal(err)
		}
		const block = 4096
		for off := 0; off < len(data); off += block {
			chunk := data[off:min(off+block, len(data))]
			if strings.Trim(string(chunk), "\x00") == "" {
				continue
			}
			if _, err := out.WriteAt(chunk, int64(off)); err != nil {
				t.Fatal(err)
			}
		}
		if err := out.Truncate(int64(len(data))); err != nil {
			t.Fatal(err)
		}
		if err := out.Close(); err != nil {
			t.Fatal(err)
		}
	}
	return copied
}

// TestOpenClosesAStoreLeftOpenInItsDirectory: a store Close left open
// (its directory could not be written) holds the directory's lock, and
// an Open of that directory in the same process (a config reload that
// uses it again) failed on it until the process ended. Now Open closes
// the store left open once it can be closed and opens the directory,
// finding its writes; while it still cannot be, Open says why.
func TestOpenClosesAStoreLeftOpenInItsDirectory(t *testing.T) {
	denied := denyWrites(t, "permission denied")
	dir := t.TempDir()
	s, err := Open(dir, Options{})
	if err != nil {
		t.Fatal(err)
	}
	ctx := t.Context()
	if err := s.Put(ctx, "kept", []byte("v"), 0); err != nil {
		t.Fatal(err)
	}
	denied.Store(true)
	if err := closeWithin(t, s); !errors.Is(err, storage.ErrUnavailable) {
		t.Fatalf("Close of a directory that cannot be written: %v; want ErrUnavailable (left open)", err)
	}
	if _, err := Open(dir, Options{}); err == nil || !strings.Contains(err.Error(), "left open") {
		t.Fatalf("Open while the store left open still cannot be closed: %v; want an error saying so", err)
	}
	denied.Store(false)
	again, err := Open(dir, Options{})
	if err != nil {
		t.Fatalf("Open once the store left open can be closed: %v", err)
	}
	if v, err := again.Get(ctx, "kept"); err != nil || string(v) != "v" {
		t.Fatalf("the write before: %q, %v", v, err)
	}
	if err := closeWithin(t, again); err != nil {
		t.Fatal(err)
	}
}
