//go:build !unix

package usage

import "os"

// lockDir only creates the lock file where flock is not available: keep one
// spill directory per process there by configuration.
func lockDir(path string) (*os.File, error) {
	return os.OpenFile(path, os.O_CREATE|os.O_RDWR, 0o600)
}

func unlockDir(f *os.File) error {
	if f == nil {
		return nil
	}
	return f.Close()
}
