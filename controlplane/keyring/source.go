package keyring

import (
	"crypto/rand"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"time"
)

// The text format holds one key per line, "<id>:<base64 secret>", the active
// key first. Blank lines and lines starting with '#' are ignored. The secret
// is standard padded base64, as `openssl rand -base64 32` prints it:
//
//	# rotated 2026-03-01; drop 2025-09 once nothing is sealed by it
//	2026-03:ZXhhbXBsZS1rZXktMjAyNi0wMy1ub3QtZm9yLXVzZSE=
//	2025-09:ZXhhbXBsZS1rZXktMjAyNS0wOS1ub3QtZm9yLXVzZSE=

// maxFileSize bounds what Load reads: a keyring is a few lines, and a huge
// file is a misconfiguration (a wrong path), not a keyring.
const maxFileSize = 64 << 10

// Parse reads a keyring in the text format. Errors give the line number and
// never contain the line's text, since any of it may be a secret.
func Parse(text string) (*Keyring, error) {
	kr, err := parse(text)
	if err != nil {
		return nil, fmt.Errorf("keyring: %w", err)
	}
	return kr, nil
}

// parse returns errors without the "keyring: " prefix, so that callers can
// say where the text came from.
func parse(text string) (*Keyring, error) {
	var keys []Key
	seen := map[string]int{} // id → line
	for i, line := range strings.Split(text, "\n") {
		n := i + 1
		line = strings.TrimSpace(line) // also drops the \r of CRLF files
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		id, encoded, ok := strings.Cut(line, ":")
		if !ok {
			return nil, fmt.Errorf("line %d: want <id>:<base64 secret>, found no ':'", n)
		}
		id, encoded = strings.TrimSpace(id), strings.TrimSpace(encoded)
		if err := checkID(id); err != nil {
			return nil, fmt.Errorf("line %d: %w", n, err)
		}
		if prev, dup := seen[id]; dup {
			return nil, fmt.Errorf("line %d: key id %q is already used on line %d", n, id, prev)
		}
		seen[id] = n
		secret, err := base64.StdEncoding.DecodeString(encoded)
		if err != nil {
			// Not wrapped: base64's error is only an offset, and a precise
			// offset into a secret is not worth risking a future change
			// that quotes it.
			return nil, fmt.Errorf("line %d: key %q: secret is not valid standard base64 (make one with: openssl rand -base64 %d)",
				n, id, SecretSize)
		}
		k := Key{ID: id, Secret: secret}
		if err := checkKey(k); err != nil {
			return nil, fmt.Errorf("line %d: %w", n, err)
		}
		keys = append(keys, k)
	}
	if len(keys) == 0 {
		return nil, errors.New("no keys: want one <id>:<base64 secret> line per key, the active key first")
	}
	return build(keys)
}

// Load reads a keyring file in the text format. It refuses a file that users
// other than its owner may read or write: the master key opens every
// credential in the database.
func Load(path string) (*Keyring, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("keyring: %w", err)
	}
	defer func() { _ = f.Close() }() // read only: closing cannot lose data
	// Stat the open file, not the path, so the mode checked is the mode of
	// the file read.
	fi, err := f.Stat()
	if err != nil {
		return nil, fmt.Errorf("keyring: %w", err)
	}
	if !fi.Mode().IsRegular() {
		return nil, fmt.Errorf("keyring: %s is not a regular file", path)
	}
	// Windows has no Unix permission bits; Go reports 0666 for every
	// writable file there, which says nothing about who can read it.
	if perm := fi.Mode().Perm(); perm&0o077 != 0 && runtime.GOOS != "windows" {
		return nil, fmt.Errorf("keyring: %s has mode %04o, so other users may read the master key: run chmod 600 %s",
			path, perm, path)
	}
	data, err := io.ReadAll(io.LimitReader(f, maxFileSize+1))
	if err != nil {
		return nil, fmt.Errorf("keyring: reading %s: %w", path, err)
	}
	if len(data) > maxFileSize {
		return nil, fmt.Errorf("keyring: %s is larger than %d bytes; is it the right file?", path, maxFileSize)
	}
	kr, err := parse(string(data))
	if err != nil {
		return nil, fmt.Errorf("keyring: %s: %w", path, err)
	}
	return kr, nil
}

// FromEnv reads a keyring in the text format from the environment variable
// name. ok is false when the variable is not set. A variable that is set but
// empty is an error rather than "not set": it is what a missing Kubernetes
// Secret key or a typo in a deployment file looks like, and silently falling
// back to another key source would seal with a key nobody meant to use.
func FromEnv(name string) (kr *Keyring, ok bool, err error) {
	text, ok := os.LookupEnv(name)
	if !ok {
		return nil, false, nil
	}
	if strings.TrimSpace(text) == "" {
		return nil, true, fmt.Errorf("keyring: $%s is set but empty", name)
	}
	kr, err = parse(text)
	if err != nil {
		return nil, true, fmt.Errorf("keyring: $%s: %w", name, err)
	}
	return kr, true, nil
}

// LoadOrGenerate loads the keyring file at path or, if there is none,
// creates it with one fresh random key, mode 0600. It is how `tollgate dev`
// gets a master key without configuration; production should provide one.
//
// The file appears complete or not at all: it is written to a temporary file
// and hard-linked into place, which fails if path exists. So a crash leaves
// no half-written key file that would lock every later start out, and two
// processes starting at once end up with the same key.
func LoadOrGenerate(path string) (*Keyring, error) {
	kr, err := Load(path)
	if err == nil || !errors.Is(err, fs.ErrNotExist) {
		return kr, err
	}
	key, err := generateKey()
	if err != nil {
		return nil, err
	}
	text := fmt.Sprintf("# Tollgate master key, generated %s. Losing it loses every credential it sealed.\n%s:%s\n",
		time.Now().UTC().Format(time.RFC3339), key.ID, base64.StdEncoding.EncodeToString(key.Secret))

	dir := filepath.Dir(path)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("keyring: %w", err)
	}
	created, err := createExclusive(path, []byte(text))
	if err != nil {
		return nil, err
	}
	if !created {
		return Load(path) // another process got there first
	}
	syncDir(dir)
	return build([]Key{key})
}

// generateKey draws a key whose id says when it was made, plus a random
// suffix so that two keys made the same day differ.
func generateKey() (Key, error) {
	buf := make([]byte, SecretSize+2)
	if _, err := rand.Read(buf); err != nil {
		return Key{}, fmt.Errorf("keyring: generating key: %w", err)
	}
	id := time.Now().UTC().Format("20060102") + "-" + hex.EncodeToString(buf[SecretSize:])
	return Key{ID: id, Secret: buf[:SecretSize]}, nil
}

// createExclusive writes data to path unless path exists, in which case it
// reports created=false.
func createExclusive(path string, data []byte) (created bool, err error) {
	tmp, err := os.CreateTemp(filepath.Dir(path), ".keyring-*.tmp") // mode 0600
	if err != nil {
		return false, fmt.Errorf("keyring: %w", err)
	}
	// Best effort: by now the key is at path or the call failed, and a
	// temporary file left behind has mode 0600, like the key file.
	defer func() { _ = os.Remove(tmp.Name()) }()
	if _, err := tmp.Write(data); err != nil {
		_ = tmp.Close() // the write error is the one to report
		return false, fmt.Errorf("keyring: writing %s: %w", tmp.Name(), err)
	}
	if err := tmp.Sync(); err != nil {
		_ = tmp.Close() // the sync error is the one to report
		return false, fmt.Errorf("keyring: writing %s: %w", tmp.Name(), err)
	}
	if err := tmp.Close(); err != nil {
		return false, fmt.Errorf("keyring: writing %s: %w", tmp.Name(), err)
	}
	err = os.Link(tmp.Name(), path)
	switch {
	case err == nil:
		return true, nil
	case errors.Is(err, fs.ErrExist):
		return false, nil
	}
	// Some file systems (certain FUSE and network mounts) have no hard
	// links. O_EXCL still never overwrites a key; it only loses the
	// all-or-nothing write.
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if errors.Is(err, fs.ErrExist) {
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("keyring: %w", err)
	}
	if _, err := f.Write(data); err != nil {
		_ = f.Close() // the write error is the one to report
		return false, removePartial(path, err)
	}
	if err := f.Sync(); err != nil {
		_ = f.Close() // the sync error is the one to report
		return false, removePartial(path, err)
	}
	if err := f.Close(); err != nil {
		return false, removePartial(path, err)
	}
	return true, nil
}

// removePartial removes the key file at path after writing it failed with
// err. A half-written key file would stop every later start, so a failure to
// remove it is reported too, for the operator to delete it by hand.
func removePartial(path string, err error) error {
	err = fmt.Errorf("keyring: writing %s: %w", path, err)
	if rerr := os.Remove(path); rerr != nil {
		return errors.Join(err, fmt.Errorf("keyring: removing the partly written %s: %w", path, rerr))
	}
	return err
}

// syncDir makes the new directory entry durable, so that a key that may
// already have sealed data does not vanish in a power cut. Best effort:
// some systems (Windows) cannot sync a directory.
func syncDir(dir string) {
	if d, err := os.Open(dir); err == nil {
		_ = d.Sync()
		_ = d.Close()
	}
}
