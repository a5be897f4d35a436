// Package quota admits requests against their tenant's and their key's
// limits: requests per minute, tokens per minute, concurrent requests, and
// budgets per UTC day, per UTC calendar month and in total. It is pure: no
// I/O, no goroutines, the time given to each call or read from an
// injected clock. docs/policy.md is the user-facing account; this comment
// is the design.
//
// # Admission with reservation
//
// Admit checks a request against every limit of every subject (tenant and
// key; both must admit, so the stricter wins) and reserves, all at once or
// not at all: one request, the request's worst-case tokens (prompt +
// max output), one concurrency slot and its worst-case cost on every
// budget. Each counter reserves if the units fit; if one refuses, those
// already reserved are given back before any lock is released. The
// subjects' locks are held throughout, so no other request sees a partial
// reservation, and a refusal leaves every counter as it was. Concurrent requests cannot all
// pass the check before any spend is recorded: the spend is recorded (as
// held) by the check that passes.
//
// Reservation.Settle replaces the reservation with the actual usage, down
// (the difference is released for later requests) or up (charged: spend is
// never dropped; the next request is refused instead), and frees the
// concurrency slot. Release settles a request that never reached a
// provider at nothing, though it still counts as a request per minute.
// The caller settles every reservation; Sweep settles one left open for
// longer than Options.MaxHold at its reserved cost, so that a caller's bug
// cannot hold a concurrency slot forever.
//
// A budget's spend belongs to the day (month) in which the request was
// admitted, like its usage record: at midnight UTC the new day starts at
// zero, and reservations of the old day settle into the old day.
//
// Soft limits are checked against settled spend (a reservation is a worst
// case, and would cry wolf) and reported once per window as an Event from
// Settle, Release or Sweep; the caller writes the audit event.
//
// # Rolling windows: GCRA
//
// Requests and tokens per minute are counted with the generic cell rate
// algorithm: a token bucket holding `limit` units that refills at `limit`
// per minute, kept as one number (the debt still to drain) and a time per
// counter. The alternatives were:
//
//   - a sliding window log: exact over any 60 s, but one entry per request
//     in the window (up to the RPM limit per subject, unbounded with only a
//     TPM limit), and a settlement must find its entry;
//   - a sliding window counter (two fixed buckets, the older weighted by
//     how much of it is still in the window): 16 bytes, but it assumes the
//     older bucket's requests were spread evenly; a burst at the end of one
//     minute lets through up to twice the limit over the next 60 s, and its
//     "reset" has no exact meaning.
//
// GCRA costs 16 bytes, is exact for what it defines, and is additive: a
// reservation is debt, a settlement adds or removes debt, and a lease from
// a quota authority (below) is debt taken in advance. Its remaining units
// and time to full are exactly what OpenAI's x-ratelimit-remaining-* and
// x-ratelimit-reset-* headers report ("time until the rate limit resets to
// its initial state"). Its price is the burst: after a quiet minute a
// subject may send `limit` at once and then one more every minute/limit,
// so a 60 s span can hold up to 2·limit−1 requests, while the sustained
// rate is exactly `limit` per minute. Settling below a reservation refunds
// only the part of the reservation the bucket has not drained yet (each
// reservation is marked with its place in the bucket's queue): a larger
// refund would erase later requests' usage.
//
// Rates are counted only while a limit is set (a bucket has no drain rate
// without one); concurrency and spend are always counted, so that a limit
// set later starts from the real usage. Limits travel with every Admit, so
// a policy change applies to the next request and counters keep their
// usage across it.
//
// # Storage: Ledger
//
// The engine decides; a Ledger counts. Each subject has one Counter per
// Meter, taken from the ledger once and used under the subject's lock:
// Reserve (count n if they fit under this limit, return a Mark), Settle
// (replace reserved units with actual ones) and Look (read, for refusals,
// headers, soft limits and State). LocalLedger counts in memory, exactly,
// for one replica; extproc/quotalease spends leases from the control plane
// across replicas, without touching admission.
//
// # Across replicas: leases
//
// The control plane is the quota authority (controlplane/quotaauthority,
// tollgate.quota.v1): it keeps the authoritative count of each leased
// counter through ent, so that it survives a restart, and grants each
// ext_proc replica leases of units, which extproc/quotalease spends behind
// this package's Ledger interface: admission does not change. A replica
// takes from its lease with no remote call and renews in the background
// before the lease runs low, reporting its settled usage.
//
// Accuracy, with N replicas, a hard limit H and leases of at most ℓ units:
// leases are strict (granted only while settled + held + new ≤ H), so the
// units admitted never exceed H, 0 over, as on one replica; the only way
// over is a settlement above its reservation. The price is headroom: near
// the limit a replica may refuse while up to (N−1)·ℓ units sit in other
// replicas' leases (grants shrink to a share of what is left). With the
// control plane unreachable a replica spends what its leases hold, then
// budgets fail closed (Reading.Unavailable) and rates fail open (a local
// bucket of limit/N) or closed by configuration. docs/policy.md has the
// protocol and the whole bound.
package quota
