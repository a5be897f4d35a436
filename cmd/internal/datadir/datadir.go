// Package datadir locates the directory where `tollgate dev` keeps its
// embedded state (SQLite database, master key, operator token), so that
// tollgatectl finds the operator token without flags on the same machine.
package datadir

import (
	"os"
	"path/filepath"
)

// OperatorTokenFile is the name of the operator token file in the data
// directory.
const OperatorTokenFile = "operator-token"

// Default returns $TOLLGATE_DATA_DIR, else $XDG_DATA_HOME/tollgate, else
// ~/.local/share/tollgate, else ./.tollgate when no home directory is known.
func Default() string {
	if d := os.Getenv("TOLLGATE_DATA_DIR"); d != "" {
		return d
	}
	if d := os.Getenv("XDG_DATA_HOME"); d != "" {
		return filepath.Join(d, "tollgate")
	}
	if home, err := os.UserHomeDir(); err == nil && home != "" {
		return filepath.Join(home, ".local", "share", "tollgate")
	}
	return ".tollgate"
}
