package ctl

import (
	"errors"
	"fmt"
	"io"
	"os"
	"strings"

	"github.com/spf13/pflag"
)

// maxCredentialBytes bounds what --credential-stdin and --credential-file
// read, so pointing one at the wrong file fails fast instead of uploading it.
const maxCredentialBytes = 64 << 10

// credentialFlags are the ways to hand tollgatectl a provider's API key. There
// is deliberately no --credential VALUE: a value on the command line lands in
// shell history and in every other user's `ps`.
type credentialFlags struct {
	file  string
	env   string
	stdin bool
}

func (cf *credentialFlags) register(f *pflag.FlagSet) {
	f.StringVar(&cf.file, "credential-file", "", "read the provider's API key from this file")
	f.StringVar(&cf.env, "credential-env", "", "read the provider's API key from this environment variable")
	f.BoolVar(&cf.stdin, "credential-stdin", false, "read the provider's API key from standard input")
}

// given says whether a credential flag was used, and refuses more than one
// because there is no sensible precedence between them.
func (cf *credentialFlags) given(f *pflag.FlagSet) (bool, error) {
	n := 0
	for _, name := range []string{"credential-file", "credential-env", "credential-stdin"} {
		if f.Changed(name) {
			n++
		}
	}
	if n > 1 {
		return false, usagef("give only one of --credential-file, --credential-env and --credential-stdin")
	}
	if f.Changed("credential-file") && cf.file == "" {
		return false, usagef("--credential-file needs a path")
	}
	if f.Changed("credential-env") && cf.env == "" {
		return false, usagef("--credential-env needs a variable name")
	}
	if f.Changed("credential-stdin") && !cf.stdin {
		// Otherwise an update would send an empty credential in its mask and
		// erase the stored one.
		return false, usagef("--credential-stdin takes no value; leave it out to keep the credential")
	}
	return n == 1, nil
}

// read returns the credential with surrounding whitespace removed, since
// files and `echo` end with a newline that is never part of a key. Errors
// name the source and never quote the value.
func (cf *credentialFlags) read(stdin io.Reader) (string, error) {
	var raw, source string
	switch {
	case cf.file != "":
		source = cf.file
		f, err := os.Open(cf.file)
		if err != nil {
			return "", fmt.Errorf("read credential: %w", err)
		}
		defer func() { _ = f.Close() }() // read-only: Close cannot lose data
		if raw, err = readBounded(f); err != nil {
			return "", fmt.Errorf("read credential from %s: %w", cf.file, err)
		}
	case cf.env != "":
		source = "$" + cf.env
		v, ok := os.LookupEnv(cf.env)
		if !ok {
			return "", fmt.Errorf("read credential: $%s is not set", cf.env)
		}
		raw = v
	case cf.stdin:
		source = "standard input"
		var err error
		if raw, err = readBounded(stdin); err != nil {
			return "", fmt.Errorf("read credential from standard input: %w", err)
		}
	}
	cred := strings.TrimSpace(raw)
	if cred == "" {
		return "", fmt.Errorf("read credential: %s is empty", source)
	}
	return cred, nil
}

func readBounded(r io.Reader) (string, error) {
	b, err := io.ReadAll(io.LimitReader(r, maxCredentialBytes+1))
	if err != nil {
		return "", err
	}
	if len(b) > maxCredentialBytes {
		return "", errors.New("longer than 64 KiB; is this the right file?")
	}
	return string(b), nil
}
