package admin

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"strings"

	"github.com/google/uuid"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	adminv1 "github.com/tollgate-dev/tollgate/api/tollgate/admin/v1"
	"github.com/tollgate-dev/tollgate/controlplane/contentlog"
	"github.com/tollgate-dev/tollgate/controlplane/invalid"
	"github.com/tollgate-dev/tollgate/controlplane/privacy"
	"github.com/tollgate-dev/tollgate/ent"
	"github.com/tollgate-dev/tollgate/ent/tenant"
)

type privacyService struct {
	adminv1.UnimplementedPrivacyServiceServer
	*Server
	vault   *contentlog.Vault
	confirm *privacy.Confirmations
}

func newPrivacyService(s *Server) *privacyService {
	// NewVault fails only without a keyring, which New already refused.
	vault, _ := contentlog.NewVault(s.keyring)
	return &privacyService{Server: s, vault: vault, confirm: privacy.NewConfirmations(s.keyring, s.now)}
}

// resolved is a subject the caller may act on.
type resolved struct {
	subj    privacy.Subject
	tenant  *ent.Tenant
	account *ent.Account // nil for a whole tenant
}

func (r resolved) targetType() string {
	if r.account != nil {
		return "account"
	}
	return "tenant"
}

func (r resolved) targetID() uuid.UUID {
	if r.account != nil {
		return r.account.ID
	}
	return r.tenant.ID
}

// resolveSubject finds the subject; what the caller may not see is
// NotFound, as everywhere in the admin API.
func resolveSubject(ctx context.Context, c *ent.Client, p Principal, in *adminv1.PrivacySubject) (resolved, error) {
	if in == nil {
		return resolved{}, invalid.Field("subject", "is required: give subject.tenant, and subject.account_id for one account")
	}
	if err := privacySelfCheck(p, in); err != nil {
		return resolved{}, err
	}
	var accountID uuid.UUID
	if in.GetAccountId() != "" {
		id, err := parseID("subject.account_id", in.GetAccountId())
		if err != nil {
			return resolved{}, err
		}
		accountID = id
	}
	t, err := resolveTenant(ctx, c.Tenant, p, "subject.tenant", in.GetTenant())
	if err != nil {
		return resolved{}, err
	}
	r := resolved{subj: privacy.Subject{TenantID: t.ID, AccountID: accountID}, tenant: t}
	if accountID != uuid.Nil {
		a, err := c.Account.Get(ctx, accountID)
		if ent.IsNotFound(err) || (err == nil && a.TenantID != t.ID) {
			return resolved{}, notFound("account", in.GetAccountId())
		}
		if err != nil {
			return resolved{}, err
		}
		r.account = a
	}
	return r, nil
}

func (s *privacyService) audit(ctx context.Context, tx *ent.Tx, p Principal, r resolved, action string, fields []string) error {
	return record(ctx, tx, p, event{action: action, targetType: r.targetType(), targetID: r.targetID(), tenantID: &r.tenant.ID, fields: fields})
}

// exportChunkBytes is about how much of the export one message carries.
const exportChunkBytes = 64 << 10

func (s *privacyService) ExportData(req *adminv1.ExportDataRequest, stream adminv1.PrivacyService_ExportDataServer) error {
	ctx := stream.Context()
	p := principalFrom(ctx)
	r, err := resolveSubject(ctx, s.store.Client(), p, req.GetSubject())
	if err != nil {
		return s.toStatus(ctx, "export data", err)
	}
	// The export is audited before it starts: an interrupted export was
	// still an access.
	if err := s.store.InTx(ctx, func(tx *ent.Tx) error { return s.audit(ctx, tx, p, r, "privacy.export", nil) }); err != nil {
		return s.toStatus(ctx, "export data", err)
	}
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	flush := func() error {
		if buf.Len() == 0 {
			return nil
		}
		err := stream.Send(&adminv1.ExportDataResponse{Chunk: bytes.Clone(buf.Bytes())})
		buf.Reset()
		return err
	}
	emit := func(l privacy.Line) error {
		if err := enc.Encode(l); err != nil {
			return err
		}
		if buf.Len() >= exportChunkBytes {
			return flush()
		}
		return nil
	}
	header := map[string]any{"subject_type": r.targetType(), "tenant_id": r.tenant.ID.String(), "time": s.clock().Format("2006-01-02T15:04:05Z")}
	if r.account != nil {
		header["account_id"] = r.account.ID.String()
	}
	if err := emit(privacy.Line{Section: "export", Record: header}); err != nil {
		return s.toStatus(ctx, "export data", err)
	}
	if err := privacy.NewExporter(s.store, s.vault).Export(ctx, r.subj, emit); err != nil {
		return s.toStatus(ctx, "export data", err)
	}
	return s.toStatus(ctx, "export data", flush())
}

func (s *privacyService) CorrectData(ctx context.Context, req *adminv1.CorrectDataRequest) (*adminv1.CorrectDataResponse, error) {
	p := principalFrom(ctx)
	account := req.GetSubject().GetAccountId() != ""
	allowed := []string{"name", "billing_email", "billing_reference"}
	if account {
		allowed = []string{"email", "name"}
	}
	paths, err := maskPaths(req.GetUpdateMask(), allowed...)
	if err != nil {
		return nil, badRequest(err)
	}
	var (
		errs                []error
		email, billingEmail string
	)
	for _, path := range paths {
		switch path {
		case "email":
			email, err = normalizeEmail("email", req.GetEmail(), true)
			errs = append(errs, err)
		case "name":
			errs = append(errs, checkText("name", req.GetName(), 200, !account))
		case "billing_email":
			billingEmail, err = normalizeEmail("billing_email", req.GetBillingEmail(), false)
			errs = append(errs, err)
		case "billing_reference":
			errs = append(errs, checkText("billing_reference", req.GetBillingReference(), 200, false))
		}
	}
	if err := errors.Join(errs...); err != nil {
		return nil, badRequest(err)
	}
	err = s.mutate(ctx, func(tx *ent.Tx) error {
		r, err := resolveSubject(ctx, tx.Client(), p, req.GetSubject())
		if err != nil {
			return err
		}
		if r.account != nil {
			if err := ownerCheck(p, r.account.Role); err != nil {
				return err
			}
			u := tx.Account.UpdateOne(r.account)
			for _, path := range paths {
				switch path {
				case "email":
					if err := checkEmailFree(ctx, tx, r.tenant.ID, email, r.account.ID); err != nil {
						return err
					}
					u.SetEmail(email)
				case "name":
					u.SetName(req.GetName())
				}
			}
			if err := u.Exec(ctx); err != nil {
				return err
			}
		} else {
			u := tx.Tenant.UpdateOne(r.tenant)
			for _, path := range paths {
				switch path {
				case "name":
					u.SetName(req.GetName())
				case "billing_email":
					u.SetBillingEmail(billingEmail)
				case "billing_reference":
					u.SetBillingReference(req.GetBillingReference())
				}
			}
			if err := u.Exec(ctx); err != nil {
				return err
			}
		}
		return s.audit(ctx, tx, p, r, "privacy.correct", paths)
	})
	if err != nil {
		return nil, s.toStatus(ctx, "correct data", err)
	}
	return &adminv1.CorrectDataResponse{ChangedFields: paths}, nil
}

// mayErase: a whole tenant only by the operator; an account by its
// tenant's admins too.
func mayErase(p Principal, r resolved) error {
	if r.account == nil {
		return requireOperator(p, "erase a whole tenant")
	}
	return ownerCheck(p, r.account.Role)
}

func planToProto(p privacy.Plan) *adminv1.ErasurePlan {
	return &adminv1.ErasurePlan{Accounts: int64(p.Accounts), Keys: int64(p.Keys), ContentLogs: int64(p.ContentLogs),
		UsageRecords: int64(p.UsageRecords), Invoices: int64(p.Invoices)}
}

func (s *privacyService) PrepareErasure(ctx context.Context, req *adminv1.PrepareErasureRequest) (*adminv1.PrepareErasureResponse, error) {
	p := principalFrom(ctx)
	c := s.store.Client()
	r, err := resolveSubject(ctx, c, p, req.GetSubject())
	if err != nil {
		return nil, s.toStatus(ctx, "prepare erasure", err)
	}
	if err := mayErase(p, r); err != nil {
		return nil, err
	}
	plan, err := privacy.PlanErasure(ctx, c, r.subj)
	if errors.Is(err, privacy.ErrNotFound) {
		return nil, status.Errorf(codes.NotFound, "%s not found", r.targetType())
	}
	if err != nil {
		return nil, s.toStatus(ctx, "prepare erasure", err)
	}
	token, exp, err := s.confirm.Issue(r.subj, p.Actor())
	if err != nil {
		return nil, s.toStatus(ctx, "prepare erasure", err)
	}
	if err := s.store.InTx(ctx, func(tx *ent.Tx) error { return s.audit(ctx, tx, p, r, "privacy.erase_prepare", nil) }); err != nil {
		return nil, s.toStatus(ctx, "prepare erasure", err)
	}
	return &adminv1.PrepareErasureResponse{Plan: planToProto(plan), ConfirmationToken: token, ExpireTime: ts(exp)}, nil
}

func (s *privacyService) Erase(ctx context.Context, req *adminv1.EraseRequest) (*adminv1.EraseResponse, error) {
	p := principalFrom(ctx)
	if req.GetConfirmationToken() == "" {
		return nil, badRequest(invalid.Field("confirmation_token", "is required: get one with PrepareErasure"))
	}
	var erased *privacy.Erased
	var plan privacy.Plan
	err := s.mutate(ctx, func(tx *ent.Tx) error {
		r, err := resolveSubject(ctx, tx.Client(), p, req.GetSubject())
		if err != nil {
			return err
		}
		if err := mayErase(p, r); err != nil {
			return err
		}
		if err := s.confirm.Check(req.GetConfirmationToken(), r.subj, p.Actor()); err != nil {
			return invalid.Field("confirmation_token", "%s", err.Error())
		}
		if plan, err = privacy.PlanErasure(ctx, tx.Client(), r.subj); err != nil {
			return err
		}
		if erased, err = privacy.EraseTx(ctx, tx, r.subj); err != nil {
			return err
		}
		return s.audit(ctx, tx, p, r, "privacy.erase", nil)
	})
	if errors.Is(err, privacy.ErrNotFound) {
		return nil, status.Error(codes.NotFound, "the subject no longer exists")
	}
	if err != nil {
		return nil, s.toStatus(ctx, "erase", err)
	}
	// Nothing can read the content any more; delete it before answering,
	// so that "complete" means gone. privacy.purge finishes the job if
	// this call is cut short.
	if _, err := privacy.Finish(ctx, s.store, erased, privacy.DefaultPurgeBatch); err != nil {
		return nil, s.toStatus(ctx, "erase (deleting content)", err)
	}
	return &adminv1.EraseResponse{Erased: planToProto(plan), CompleteTime: ts(s.clock())}, nil
}

// maxRestrictionReason bounds a restriction's reason (the column's size).
const maxRestrictionReason = 500

func (s *privacyService) Restrict(ctx context.Context, req *adminv1.RestrictRequest) (*adminv1.RestrictResponse, error) {
	reason := strings.TrimSpace(req.GetReason())
	if err := checkText("reason", reason, maxRestrictionReason, false); err != nil {
		return nil, badRequest(err)
	}
	if err := s.setRestricted(ctx, req.GetSubject(), true, reason); err != nil {
		return nil, err
	}
	return &adminv1.RestrictResponse{}, nil
}

func (s *privacyService) Unrestrict(ctx context.Context, req *adminv1.UnrestrictRequest) (*adminv1.UnrestrictResponse, error) {
	if err := s.setRestricted(ctx, req.GetSubject(), false, ""); err != nil {
		return nil, err
	}
	return &adminv1.UnrestrictResponse{}, nil
}

// restrictionReason is the reason to show: none once the restriction is
// lifted (UpdateTenant may lift a tenant's without clearing it).
func restrictionReason(restricted bool, reason string) string {
	if !restricted {
		return ""
	}
	return reason
}

// setRestricted sets or lifts a restriction, with its reason. It goes
// through mutate, so ext_proc learns of it with the next configuration
// update. Restricting what is already restricted changes only the reason
// (audited as such); lifting what is not restricted changes nothing.
func (s *privacyService) setRestricted(ctx context.Context, in *adminv1.PrivacySubject, on bool, reason string) error {
	p := principalFrom(ctx)
	action := "privacy.unrestrict"
	if on {
		action = "privacy.restrict"
	}
	err := s.mutate(ctx, func(tx *ent.Tx) error {
		r, err := resolveSubject(ctx, tx.Client(), p, in)
		if err != nil {
			return err
		}
		if r.account != nil {
			if err := ownerCheck(p, r.account.Role); err != nil {
				return err
			}
			fields := changedRestriction(r.account.Restricted, on, r.account.RestrictionReason, reason, "restricted")
			if len(fields) == 0 {
				return nil
			}
			if err := tx.Account.UpdateOne(r.account).SetRestricted(on).SetRestrictionReason(reason).Exec(ctx); err != nil {
				return err
			}
			return s.audit(ctx, tx, p, r, action, fields)
		}
		if err := requireOperator(p, "restrict or unrestrict a whole tenant"); err != nil {
			return err
		}
		want, from := tenant.StatusRestricted, tenant.StatusActive
		if !on {
			want, from = tenant.StatusActive, tenant.StatusRestricted
		}
		if r.tenant.Status != want && r.tenant.Status != from {
			return status.Errorf(codes.FailedPrecondition, "tenant %q is %s; lift that first (TenantService.UpdateTenant)", r.tenant.Slug, r.tenant.Status)
		}
		was := r.tenant.Status == tenant.StatusRestricted
		fields := changedRestriction(was, on, restrictionReason(was, r.tenant.RestrictionReason), reason, "status")
		if len(fields) == 0 {
			return nil // already so; nothing to audit
		}
		if err := tx.Tenant.UpdateOne(r.tenant).SetStatus(want).SetRestrictionReason(reason).Exec(ctx); err != nil {
			return err
		}
		return s.audit(ctx, tx, p, r, action, fields)
	})
	return s.toStatus(ctx, action, err)
}

// changedRestriction names the fields a restriction change sets: the flag
// (flagField) and the reason, each only if it changes.
func changedRestriction(was, on bool, oldReason, reason, flagField string) []string {
	var fields []string
	if was != on {
		fields = append(fields, flagField)
	}
	if oldReason != reason {
		fields = append(fields, "restriction_reason")
	}
	return fields
}
