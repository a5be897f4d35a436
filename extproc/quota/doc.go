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
// for one replica. The next step replaces it with a lease ledger without
// touching admission.
//
// # Across replicas: leases (design for the next step)
//
// The control plane is the quota authority. For each counter it keeps the
// authoritative count (through ent, so that it survives a restart) and
// grants each ext_proc replica a lease: units it may take locally, until
// an expiry. A replica takes from its lease with no remote call and renews
// in the background before the lease runs low (at half, say), reporting
// its settled usage, which the authority charges in place of the lease.
//
// Accuracy, with N replicas, a hard limit H and leases of at most ℓ units:
//
//   - Strict leases (granted only while counted + leased + ℓ ≤ H): the
//     units admitted never exceed H, 0 over, as on one replica. The price
//     is headroom that cannot be used: near the limit a replica may refuse
//     while up to (N−1)·ℓ units sit unused in other replicas' leases.
//     Leases shrink as the limit nears (ℓ ≤ (H − counted)/(2N), say), which
//     bounds that loss by half the remaining headroom, at the cost of more
//     renewals right at the limit.
//   - The only way over H is a settlement above its reservation (a provider
//     that ignores max_tokens, an undercounted prompt, a price that rose in
//     flight): overshoot ≤ Σ (actual − reserved)⁺ over requests in flight,
//     which is 0 when the reservation is a true worst case. Spend is still
//     charged, and the next request is refused.
//   - Optimistic leases (granted without checking H) would let N replicas
//     go N·ℓ over; Tollgate does not use them for budgets.
//
// A replica that stops holding a lease leaves it charged in full until the
// lease expires and its usage records (spilled to disk and replayed, see
// extproc/usage) arrive: counts err on the side of spent, never on free.
//
// With the control plane unreachable a replica spends what its leases hold
// and then fails closed for budgets by default (a refusal that says the
// quota authority is unreachable: Reading.Unavailable); rate limits fail
// open or closed by configuration, open meaning a local bucket of limit/N
// (N as last seen), which keeps the global rate near the limit if N is
// right.
//
// Only the local ledger is implemented now; docs/policy.md marks what
// comes with the lease protocol.
package quota
