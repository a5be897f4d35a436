//go:build ignore

// entc.go generates the ent client from ./schema. Run it with `make generate`.
package main

import (
	"log"

	"entgo.io/ent/entc"
	"entgo.io/ent/entc/gen"
)

func main() {
	err := entc.Generate("./schema", &gen.Config{
		Features: []gen.Feature{
			gen.FeatureUpsert,    // idempotent usage ingestion (ON CONFLICT DO NOTHING)
			gen.FeatureExecQuery, // raw statements inside a transaction (cockroach savepoints, tests)
			gen.FeatureLock,
		},
	})
	if err != nil {
		log.Fatalf("running ent codegen: %v", err)
	}
}
