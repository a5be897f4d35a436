package ctl

import (
	"context"
	"fmt"
)

// maxPageSize is the largest page the API serves.
const maxPageSize = 1000

// collect follows next_page_token until the last page, or until limit items
// (when limit > 0), so a list verb shows everything rather than the server's
// default first page.
func collect[T any](ctx context.Context, limit int, fetch func(ctx context.Context, pageSize int32, pageToken string) ([]T, string, error)) ([]T, error) {
	if limit < 0 {
		return nil, usagef("--limit must not be negative")
	}
	var pageSize int32
	if limit > 0 && limit <= maxPageSize {
		pageSize = int32(limit)
	}
	var all []T
	token := ""
	for {
		items, next, err := fetch(ctx, pageSize, token)
		if err != nil {
			return nil, err
		}
		all = append(all, items...)
		if limit > 0 && len(all) >= limit {
			return all[:limit], nil
		}
		if next == "" {
			return all, nil
		}
		// A server that hands back the token it was given would keep us
		// here forever.
		if next == token {
			return nil, fmt.Errorf("the server returned page token %q twice; stopping", next)
		}
		token = next
	}
}
