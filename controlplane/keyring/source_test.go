package keyring

import (
	"bytes"
	"encoding/base64"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"testing"
)

func line(k Key) string { return k.ID + ":" + base64.StdEncoding.EncodeToString(k.Secret) }

func TestParse(t *testing.T) {
	k1, k2 := testKey("2026-03"), testKey("2025-09")
	text := "# master keys\r\n\n  " + line(k1) + "  \r\n# old\n\t" + line(k2) + "\n"
	kr, err := Parse(text)
	if err != nil {
		t.Fatal(err)
	}
	if kr.ActiveID() != "2026-03" || strings.Join(kr.IDs(), ",") != "2026-03,2025-09" {
		t.Fatalf("keys = %v, active %q", kr.IDs(), kr.ActiveID())
	}
	// The parsed keys are the ones written: a value sealed by New(k2) opens.
	sealed, _ := mustNew(t, k2).Seal([]byte("x"), nil)
	if _, err := kr.Open(sealed, nil); err != nil {
		t.Fatal(err)
	}
}

func TestParseErrorsNameLineAndHideSecret(t *testing.T) {
	good := testKey("good")
	secret := base64.StdEncoding.EncodeToString(testKey("s").Secret)
	short := base64.StdEncoding.EncodeToString([]byte("sixteen byte key"))
	for _, tc := range []struct {
		name, text string
		want       []string
		hidden     []string // must not appear in the message
	}{
		{
			name:   "secret without id",
			text:   line(good) + "\n\n" + secret + "\n",
			want:   []string{"line 3", "want <id>:<base64 secret>"},
			hidden: []string{secret, secret[:8]},
		},
		{
			name:   "invalid id is not echoed",
			text:   "# keys\nAbCdEfGhIjKl:" + secret + "\n",
			want:   []string{"line 2", "key id may contain only a-z, 0-9 and '-'"},
			hidden: []string{secret, "AbCdEfGhIjKl"},
		},
		{
			name:   "secret pasted in place of the id",
			text:   secret[:20] + ":" + secret[20:],
			want:   []string{"line 1", "key id"},
			hidden: []string{secret[:20], secret[20:]},
		},
		{
			name:   "empty id",
			text:   ":" + secret,
			want:   []string{"line 1", "key id is empty"},
			hidden: []string{secret},
		},
		{
			name:   "invalid base64",
			text:   "\n\n\n\nk1:" + secret[:10] + "$" + secret[11:],
			want:   []string{"line 5", `key "k1"`, "not valid standard base64", "openssl rand -base64 32"},
			hidden: []string{secret[:10], secret[11:]},
		},
		{
			name:   "url-safe base64",
			text:   "k1:" + strings.NewReplacer("+", "-", "/", "_").Replace(base64.StdEncoding.EncodeToString(bytes.Repeat([]byte{0xfb}, 32))),
			want:   []string{"line 1", "not valid standard base64"},
			hidden: []string{"-_v7"},
		},
		{
			name:   "wrong size",
			text:   "k1:" + short,
			want:   []string{"line 1", `key "k1"`, "secret is 16 bytes, want 32"},
			hidden: []string{short, "sixteen"},
		},
		{
			name:   "two keys on one line",
			text:   "k1:" + secret + " k2:" + secret,
			want:   []string{"line 1", `key "k1"`, "not valid"},
			hidden: []string{secret},
		},
		{
			name: "duplicate id",
			text: line(good) + "\n# again\n" + line(good),
			want: []string{"line 3", `key id "good" is already used on line 1`},
		},
		{
			name: "only comments",
			text: "# nothing here\n\n",
			want: []string{"no keys"},
		},
		{
			name: "empty",
			text: "",
			want: []string{"no keys"},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Parse(tc.text)
			if err == nil {
				t.Fatal("Parse succeeded")
			}
			msg := err.Error()
			for _, w := range tc.want {
				if !strings.Contains(msg, w) {
					t.Errorf("error %q does not contain %q", msg, w)
				}
			}
			for _, h := range tc.hidden {
				if strings.Contains(msg, h) {
					t.Errorf("error %q shows secret text %q", msg, h)
				}
			}
		})
	}
}

func writeFile(t *testing.T, path, text string, mode os.FileMode) {
	t.Helper()
	if err := os.WriteFile(path, []byte(text), mode); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(path, mode); err != nil { // WriteFile's mode is masked by umask
		t.Fatal(err)
	}
}

func TestLoad(t *testing.T) {
	path := filepath.Join(t.TempDir(), "master-key")
	writeFile(t, path, line(testKey("k1"))+"\n", 0o600)
	kr, err := Load(path)
	if err != nil {
		t.Fatal(err)
	}
	if kr.ActiveID() != "k1" {
		t.Fatalf("ActiveID = %q", kr.ActiveID())
	}
	writeFile(t, path, line(testKey("k1"))+"\n", 0o400)
	if _, err := Load(path); err != nil {
		t.Fatalf("read-only for the owner: %v", err)
	}
}

func TestLoadRefusesFileOthersCanAccess(t *testing.T) {
	if runtime.GOOS == "windows" {
		t.Skip("no Unix permission bits")
	}
	dir := t.TempDir()
	for _, mode := range []os.FileMode{0o644, 0o640, 0o604, 0o620, 0o602, 0o666} {
		path := filepath.Join(dir, "master key") // a space, as in many home directories
		writeFile(t, path, line(testKey("k1")), mode)
		_, err := Load(path)
		if err == nil {
			t.Fatalf("mode %04o: Load succeeded", mode)
		}
		if want := "chmod 600 " + path; !strings.Contains(err.Error(), want) {
			t.Errorf("mode %04o: error %q does not say %q", mode, err, want)
		}
		assertNoLeak(t, "error", err.Error(), testKey("k1").Secret)
	}
}

func TestLoadErrors(t *testing.T) {
	dir := t.TempDir()
	missing := filepath.Join(dir, "missing")
	if _, err := Load(missing); !errors.Is(err, fs.ErrNotExist) || !strings.Contains(err.Error(), missing) {
		t.Errorf("missing file: err = %v, want fs.ErrNotExist naming the path", err)
	}
	if _, err := Load(dir); err == nil || !strings.Contains(err.Error(), "not a regular file") {
		t.Errorf("directory: err = %v", err)
	}
	bad := filepath.Join(dir, "bad")
	secret := base64.StdEncoding.EncodeToString(testKey("s").Secret)
	writeFile(t, bad, "# ok\nK1:"+secret+"\n", 0o600)
	_, err := Load(bad)
	if err == nil || !strings.Contains(err.Error(), bad+": line 2:") {
		t.Errorf("bad line: err = %v, want it to name the file and line", err)
	}
	if err != nil && strings.Contains(err.Error(), secret) {
		t.Errorf("error shows the secret: %v", err)
	}
	huge := filepath.Join(dir, "huge")
	writeFile(t, huge, strings.Repeat("#\n", maxFileSize), 0o600)
	if _, err := Load(huge); err == nil || !strings.Contains(err.Error(), "larger than") {
		t.Errorf("huge file: err = %v", err)
	}
}

func TestFromEnv(t *testing.T) {
	const name = "TOLLGATE_TEST_MASTER_KEY"
	t.Run("unset", func(t *testing.T) {
		if err := os.Unsetenv(name); err != nil {
			t.Fatal(err)
		}
		kr, ok, err := FromEnv(name)
		if kr != nil || ok || err != nil {
			t.Fatalf("FromEnv = %v, %v, %v; want nil, false, nil", kr, ok, err)
		}
	})
	t.Run("set", func(t *testing.T) {
		t.Setenv(name, line(testKey("k2"))+"\n"+line(testKey("k1")))
		kr, ok, err := FromEnv(name)
		if err != nil || !ok || kr.ActiveID() != "k2" {
			t.Fatalf("FromEnv = %v, %v, %v", kr, ok, err)
		}
	})
	t.Run("empty", func(t *testing.T) {
		t.Setenv(name, " \n")
		_, ok, err := FromEnv(name)
		if !ok || err == nil || !strings.Contains(err.Error(), "$"+name+" is set but empty") {
			t.Fatalf("ok = %v, err = %v", ok, err)
		}
	})
	t.Run("invalid", func(t *testing.T) {
		secret := base64.StdEncoding.EncodeToString([]byte("too short a secret"))
		t.Setenv(name, "k1:"+secret)
		_, ok, err := FromEnv(name)
		if !ok || err == nil || !strings.Contains(err.Error(), "$"+name+": line 1:") {
			t.Fatalf("ok = %v, err = %v; want an error naming the variable and line", ok, err)
		}
		if strings.Contains(err.Error(), secret) {
			t.Fatalf("error shows the secret: %v", err)
		}
	})
}

func TestLoadOrGenerateCreatesPrivateFile(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "data") // does not exist yet
	path := filepath.Join(dir, "master-key")
	kr, err := LoadOrGenerate(path)
	if err != nil {
		t.Fatal(err)
	}
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if runtime.GOOS != "windows" {
		if perm := fi.Mode().Perm(); perm != 0o600 {
			t.Errorf("file mode = %04o, want 0600", perm)
		}
		if di, _ := os.Stat(dir); di.Mode().Perm() != 0o700 {
			t.Errorf("new directory mode = %04o, want 0700", di.Mode().Perm())
		}
	}
	// The file is in the documented text format and holds the key in use.
	loaded, err := Load(path)
	if err != nil {
		t.Fatal(err)
	}
	sealed, _ := kr.Seal([]byte("x"), []byte("ad"))
	if _, err := loaded.Open(sealed, []byte("ad")); err != nil {
		t.Fatalf("file does not hold the key that was returned: %v", err)
	}
	if err := checkID(kr.ActiveID()); err != nil {
		t.Errorf("generated id %q: %v", kr.ActiveID(), err)
	}
	entries, _ := os.ReadDir(dir)
	if len(entries) != 1 {
		t.Errorf("directory holds %d entries, want only the key file (no temporary files left)", len(entries))
	}
}

func TestLoadOrGenerateTwiceReturnsSameKey(t *testing.T) {
	path := filepath.Join(t.TempDir(), "master-key")
	first, err := LoadOrGenerate(path)
	if err != nil {
		t.Fatal(err)
	}
	before, _ := os.ReadFile(path)
	second, err := LoadOrGenerate(path)
	if err != nil {
		t.Fatal(err)
	}
	after, _ := os.ReadFile(path)
	if !bytes.Equal(before, after) {
		t.Fatal("second call rewrote the key file")
	}
	sealed, _ := first.Seal([]byte("x"), nil)
	if _, err := second.Open(sealed, nil); err != nil || second.ActiveID() != first.ActiveID() {
		t.Fatalf("second call returned another key: %v", err)
	}
}

func TestLoadOrGenerateConcurrentStartsAgree(t *testing.T) {
	path := filepath.Join(t.TempDir(), "master-key")
	const n = 16
	rings := make([]*Keyring, n)
	errs := make([]error, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() { rings[i], errs[i] = LoadOrGenerate(path) })
	}
	wg.Wait()
	for i := range n {
		if errs[i] != nil {
			t.Fatalf("start %d: %v", i, errs[i])
		}
		s, _ := rings[i].Seal([]byte("x"), nil)
		if _, err := rings[0].Open(s, nil); err != nil {
			t.Fatalf("start %d got a different key than start 0: %v", i, err)
		}
	}
}

func TestLoadOrGenerateNeverOverwrites(t *testing.T) {
	dir := t.TempDir()
	bad := filepath.Join(dir, "bad")
	writeFile(t, bad, "not a keyring\n", 0o600)
	if _, err := LoadOrGenerate(bad); err == nil {
		t.Fatal("LoadOrGenerate accepted a malformed key file")
	}
	if got, _ := os.ReadFile(bad); string(got) != "not a keyring\n" {
		t.Fatal("LoadOrGenerate replaced a malformed key file; the key in it may still be needed")
	}
	if runtime.GOOS != "windows" {
		open := filepath.Join(dir, "open")
		writeFile(t, open, line(testKey("k1")), 0o644)
		if _, err := LoadOrGenerate(open); err == nil || !strings.Contains(err.Error(), "chmod 600") {
			t.Fatalf("world-readable key file: err = %v", err)
		}
	}
}
