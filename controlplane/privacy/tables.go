package privacy

import (
	entsql "entgo.io/ent/dialect/sql"
	"github.com/google/uuid"
)

// Subject is whom a privacy request is about: a whole tenant, or one
// account of it.
type Subject struct {
	TenantID  uuid.UUID
	AccountID uuid.UUID // uuid.Nil for the whole tenant
}

// IsAccount reports whether the subject is one account.
func (s Subject) IsAccount() bool { return s.AccountID != uuid.Nil }

// table says what export and erasure do with one table of the store. Every
// table of the schema must be listed (TestEveryTableIsClassified): a table
// added without a decision here fails the build's tests, so nothing new can
// hold personal data that export forgets or erasure leaves behind.
type table struct {
	name string
	// tenant and account select the subject's rows (nil: the table holds
	// none of that subject's). They are SQL predicates on the table's
	// columns, so export pages through any table the same way.
	tenant, account func(id uuid.UUID) *entsql.Predicate
	// omit are columns never exported: hashes, sealed values, secrets.
	omit []string
	// erasure says, for docs/privacy.md and reviewers, what erasing a
	// subject does to the table's rows.
	erasure string
}

func eq(col string) func(uuid.UUID) *entsql.Predicate {
	return func(id uuid.UUID) *entsql.Predicate { return entsql.EQ(col, id) }
}

// inIDs selects rows whose col is the id of a row of other whose ref is id.
func inIDs(col, other, ref string) func(uuid.UUID) *entsql.Predicate {
	return func(id uuid.UUID) *entsql.Predicate {
		return entsql.In(col, entsql.Select("id").From(entsql.Table(other)).Where(entsql.EQ(ref, id)))
	}
}

func or(fs ...func(uuid.UUID) *entsql.Predicate) func(uuid.UUID) *entsql.Predicate {
	return func(id uuid.UUID) *entsql.Predicate {
		ps := make([]*entsql.Predicate, len(fs))
		for i, f := range fs {
			ps[i] = f(id)
		}
		return entsql.Or(ps...)
	}
}

// auditOfAccount: events about the account or one of its keys. target_id is
// text, so the keys' ids are compared as text.
func auditOfAccount(id uuid.UUID) *entsql.Predicate {
	keys := entsql.Select("CAST(id AS TEXT)").From(entsql.Table("api_keys")).Where(entsql.EQ("account_id", id))
	return entsql.Or(entsql.EQ("target_id", id.String()), entsql.In("target_id", keys))
}

// tables, in export order: who the subject is, then what it owns, then
// what it did.
var tables = []table{
	{name: "tenants", tenant: eq("id"),
		omit:    nil,
		erasure: "tenant: deleted (its accounts, keys, tokens, policies, providers, models, endpoints and data key go with it). account: a billing e-mail equal to the account's is cleared"},
	{name: "accounts", tenant: eq("tenant_id"), account: eq("id"),
		omit:    []string{"password_hash", "sso_subject"},
		erasure: "deleted (sessions and password links go with it)"},
	{name: "api_keys", tenant: eq("tenant_id"), account: eq("account_id"),
		omit:    []string{"hash"},
		erasure: "deleted, which revokes them at once (the data plane drops them within a second); usage keeps their ids, which then resolve to nothing"},
	{name: "admin_tokens", tenant: eq("tenant_id"),
		omit:    []string{"hash"},
		erasure: "tenant: deleted"},
	{name: "gateway_policies", tenant: or(eq("tenant_id"), inIDs("api_key_id", "api_keys", "tenant_id")), account: inIDs("api_key_id", "api_keys", "account_id"),
		erasure: "deleted with their tenant or key"},
	{name: "providers", tenant: eq("tenant_id"),
		omit:    []string{"credential"},
		erasure: "tenant: its own providers deleted"},
	{name: "models", tenant: eq("tenant_id"),
		erasure: "tenant: its own models deleted"},
	{name: "model_deployments", tenant: inIDs("model_id", "models", "tenant_id"),
		erasure: "deleted with their model"},
	{name: "model_prices", tenant: inIDs("model_id", "models", "tenant_id"),
		erasure: "deleted with their model"},
	{name: "notification_endpoints", tenant: eq("tenant_id"),
		omit:    []string{"secret"},
		erasure: "tenant: deleted. account: the account's e-mail is removed from recipient lists"},
	{name: "notifications", tenant: eq("tenant_id"),
		erasure: "tenant: deleted with their endpoints. account: notifications whose data names the account are deleted"},
	{name: "sessions", tenant: inIDs("account_id", "accounts", "tenant_id"), account: eq("account_id"),
		omit:    []string{"hash", "operator_token"},
		erasure: "deleted with their account"},
	{name: "password_tokens", tenant: inIDs("account_id", "accounts", "tenant_id"), account: eq("account_id"),
		omit:    []string{"hash"},
		erasure: "deleted with their account"},
	{name: "usage_records", tenant: eq("tenant_id"), account: inIDs("api_key_id", "api_keys", "account_id"),
		erasure: "kept for billing; the tenant and key ids they carry resolve to nothing once the tenant or keys are deleted (no name, e-mail or prefix is stored with usage)"},
	{name: "usage_rollups", tenant: eq("tenant_id"), account: inIDs("api_key_id", "api_keys", "account_id"),
		erasure: "kept for billing, like usage records"},
	{name: "content_logs", tenant: eq("tenant_id"), account: inIDs("api_key_id", "api_keys", "account_id"),
		omit:    []string{"sealed"}, // exported decrypted instead (export.go)
		erasure: "tenant: unreadable at once (its data key is destroyed), then deleted in batches before the erasure reports complete. account: the content of its keys' requests is deleted"},
	{name: "data_keys",
		erasure: "tenant: destroyed (crypto-shredding). Not exported: key material, not data about the subject"},
	{name: "invoices", tenant: eq("tenant_id"),
		erasure: "tenant: kept for the legal period (--invoice-retention-days) with billing name, e-mail and reference blanked, then deleted by privacy.purge"},
	{name: "invoice_lines", tenant: inIDs("invoice_id", "invoices", "tenant_id"),
		erasure: "kept and deleted with their invoice; they hold models, quantities and amounts only"},
	{name: "audit_events", tenant: eq("tenant_id"), account: auditOfAccount,
		erasure: "kept: they name actions, ids and changed fields, never values, so they hold no personal data"},
	{name: "config_changes", erasure: "no subject's data: a log of change times"},
	{name: "job_leases", erasure: "no subject's data: background job leases"},
	{name: "quota_counters", erasure: "no subject's data: counters by tenant and key id, pruned as their windows pass"},
	{name: "quota_leases", erasure: "no subject's data: leases by tenant and key id, pruned as they end"},
	{name: "sign_in_throttles", erasure: "no subject's data: sign-in attempt counts per client address, stored as a keyed hash (the key is derived from the operator token) and linked to no account, deleted by the hourly signin.prune job once two windows have passed since they start, so a row lives at most two windows plus an hour (80 minutes by default)"},
}

// tableNamed returns the rule for a table.
func tableNamed(name string) (table, bool) {
	for _, t := range tables {
		if t.name == name {
			return t, true
		}
	}
	return table{}, false
}
