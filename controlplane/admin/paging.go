package admin

import (
	"encoding/base64"
	"strings"
	"time"

	"github.com/google/uuid"

	"github.com/tollgate-dev/tollgate/controlplane/invalid"
)

const (
	defaultPageSize = 50
	maxPageSize     = 1000
)

// pageSize returns the number of items to return for a requested page size.
func pageSize(requested int32) (int, error) {
	switch {
	case requested < 0:
		return 0, invalid.Field("page_size", "must not be negative")
	case requested == 0:
		return defaultPageSize, nil
	case requested > maxPageSize:
		return maxPageSize, nil
	}
	return int(requested), nil
}

// Page tokens are opaque to clients: base64url of "v1|" and the sort key of
// the last item returned. Keyset pagination stays correct while rows are
// added or removed between pages, unlike offsets.
const tokenVersion = "v1|"

func encodeIDToken(id uuid.UUID) string {
	return base64.RawURLEncoding.EncodeToString([]byte(tokenVersion + id.String()))
}

func decodeIDToken(token string) (uuid.UUID, error) {
	if token == "" {
		return uuid.Nil, nil
	}
	raw, err := decodeToken(token)
	if err != nil {
		return uuid.Nil, err
	}
	id, err := uuid.Parse(raw)
	if err != nil {
		return uuid.Nil, errBadPageToken
	}
	return id, nil
}

func encodeTimeIDToken(t time.Time, id uuid.UUID) string {
	return base64.RawURLEncoding.EncodeToString([]byte(tokenVersion + t.UTC().Format(time.RFC3339Nano) + "|" + id.String()))
}

func decodeTimeIDToken(token string) (time.Time, uuid.UUID, error) {
	raw, err := decodeToken(token)
	if err != nil {
		return time.Time{}, uuid.Nil, err
	}
	ts, idText, ok := strings.Cut(raw, "|")
	if !ok {
		return time.Time{}, uuid.Nil, errBadPageToken
	}
	t, err := time.Parse(time.RFC3339Nano, ts)
	if err != nil {
		return time.Time{}, uuid.Nil, errBadPageToken
	}
	id, err := uuid.Parse(idText)
	if err != nil {
		return time.Time{}, uuid.Nil, errBadPageToken
	}
	return t, id, nil
}

var errBadPageToken = invalid.Field("page_token", "is not a token this API returned; start again without it")

func decodeToken(token string) (string, error) {
	b, err := base64.RawURLEncoding.DecodeString(token)
	if err != nil {
		return "", errBadPageToken
	}
	raw, ok := strings.CutPrefix(string(b), tokenVersion)
	if !ok {
		return "", errBadPageToken
	}
	return raw, nil
}

// page turns the rows of a query that asked for size+1 of them into at
// most size items and, when there were more, the token that continues
// after the last item returned.
func page[R, P any](rows []R, size int, conv func(R) P, token func(R) string) ([]P, string) {
	next := ""
	if len(rows) > size {
		rows = rows[:size]
		next = token(rows[size-1])
	}
	out := make([]P, 0, len(rows))
	for _, r := range rows {
		out = append(out, conv(r))
	}
	return out, next
}
