// Package ent is the generated data access layer. Only schema/ and entc.go are
// written by hand; everything else is produced by `make generate`.
package ent

//go:generate go run entc.go
