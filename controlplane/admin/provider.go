package admin

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"net/url"
	"strings"

	"entgo.io/ent/dialect/sql"
	"github.com/google/uuid"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	adminv1 "github.com/tollgate-dev/tollgate/api/tollgate/admin/v1"
	"github.com/tollgate-dev/tollgate/controlplane/invalid"
	"github.com/tollgate-dev/tollgate/controlplane/ir"
	"github.com/tollgate-dev/tollgate/ent"
	"github.com/tollgate-dev/tollgate/ent/modeldeployment"
	"github.com/tollgate-dev/tollgate/ent/provider"
)

type providerService struct {
	adminv1.UnimplementedProviderServiceServer
	*Server
}

var providerKindToProto = map[provider.Kind]adminv1.ProviderKind{
	provider.KindOpenai:           adminv1.ProviderKind_PROVIDER_KIND_OPENAI,
	provider.KindAnthropic:        adminv1.ProviderKind_PROVIDER_KIND_ANTHROPIC,
	provider.KindGemini:           adminv1.ProviderKind_PROVIDER_KIND_GEMINI,
	provider.KindAzureOpenai:      adminv1.ProviderKind_PROVIDER_KIND_AZURE_OPENAI,
	provider.KindOpenaiCompatible: adminv1.ProviderKind_PROVIDER_KIND_OPENAI_COMPATIBLE,
}

func providerKindFromProto(field string, k adminv1.ProviderKind) (provider.Kind, error) {
	for kind, v := range providerKindToProto {
		if v == k {
			return kind, nil
		}
	}
	return "", invalid.Field(field, "must be one of PROVIDER_KIND_OPENAI, PROVIDER_KIND_ANTHROPIC, PROVIDER_KIND_GEMINI, PROVIDER_KIND_AZURE_OPENAI, PROVIDER_KIND_OPENAI_COMPATIBLE")
}

// providerToProto never includes the credential: credentials are write-only.
func providerToProto(p *ent.Provider) *adminv1.Provider {
	out := &adminv1.Provider{
		Id:            p.ID.String(),
		Name:          p.Name,
		Kind:          providerKindToProto[p.Kind],
		BaseUrl:       p.BaseURL,
		ApiVersion:    p.APIVersion,
		HasCredential: len(p.Credential) > 0,
		CreateTime:    ts(p.CreatedAt),
		UpdateTime:    ts(p.UpdatedAt),
	}
	if p.TenantID != nil {
		out.TenantId = p.TenantID.String()
	}
	return out
}

// checkBaseURL accepts https anywhere, and plain http only where the traffic
// cannot leave a trusted network: loopback for every kind (local test
// servers), and private networks or cluster-internal names for
// openai_compatible servers such as vLLM and Ollama.
func checkBaseURL(field, raw string, kind provider.Kind) error {
	u, err := url.Parse(raw)
	if err != nil || u.Host == "" || (u.Scheme != "https" && u.Scheme != "http") {
		return invalid.Field(field, "must be an absolute http(s) URL such as https://api.openai.com, got %q", raw)
	}
	if u.User != nil {
		return invalid.Field(field, "must not carry credentials; set the provider's credential instead")
	}
	if u.RawQuery != "" || u.Fragment != "" {
		return invalid.Field(field, "must not have a query or fragment")
	}
	if strings.HasSuffix(u.Path, "/v1") || strings.Contains(u.Path, "/v1/") {
		base, _, _ := strings.Cut(u.Path, "/v1")
		return invalid.Field(field, "must stop before the API version: use %s://%s%s", u.Scheme, u.Host, strings.TrimSuffix(base, "/"))
	}
	if u.Scheme == "https" {
		return nil
	}
	host := u.Hostname()
	if isLoopback(host) {
		return nil
	}
	if kind == provider.KindOpenaiCompatible && isPrivateHost(host) {
		return nil
	}
	if kind == provider.KindOpenaiCompatible {
		return invalid.Field(field, "plain http is allowed only for servers on loopback, private networks or cluster-internal names; use https for %s", host)
	}
	return invalid.Field(field, "must use https (plain http is allowed only on loopback)")
}

func isLoopback(host string) bool {
	if host == "localhost" {
		return true
	}
	a, err := netip.ParseAddr(host)
	return err == nil && a.IsLoopback()
}

func isPrivateHost(host string) bool {
	if a, err := netip.ParseAddr(host); err == nil {
		return a.IsPrivate() || a.IsLoopback() || a.IsLinkLocalUnicast()
	}
	if net.ParseIP(host) != nil {
		return false
	}
	for _, suffix := range []string{".local", ".internal", ".svc", ".cluster.local", ".lan"} {
		if strings.HasSuffix(host, suffix) {
			return true
		}
	}
	// A single-label name (e.g. "vllm") resolves inside the local network.
	return !strings.Contains(host, ".")
}

// needsCredential is true for hosted APIs, which always require a key.
func needsCredential(kind provider.Kind) bool { return kind != provider.KindOpenaiCompatible }

// getProvider loads a provider p may see: platform providers are visible to
// all, a tenant's own to that tenant and the operator.
func getProvider(ctx context.Context, c *ent.ProviderClient, p Principal, field, ref string) (*ent.Provider, error) {
	id, err := parseID(field, ref)
	if err != nil {
		return nil, err
	}
	pr, err := c.Get(ctx, id)
	if ent.IsNotFound(err) || (err == nil && !visible(p, pr.TenantID)) {
		return nil, notFound("provider", ref)
	}
	return pr, err
}

func checkProviderNameFree(ctx context.Context, tx *ent.Tx, owner *uuid.UUID, name string, self uuid.UUID) error {
	q := tx.Provider.Query().Where(provider.Name(name), provider.IDNEQ(self))
	if owner == nil {
		q.Where(provider.TenantIDIsNil())
	} else {
		q.Where(provider.TenantID(*owner))
	}
	taken, err := q.Exist(ctx)
	if err != nil {
		return err
	}
	if taken {
		return status.Errorf(codes.AlreadyExists, "a provider named %q already exists", name)
	}
	return nil
}

func (s *providerService) GetProvider(ctx context.Context, req *adminv1.GetProviderRequest) (*adminv1.GetProviderResponse, error) {
	pr, err := getProvider(ctx, s.store.Client().Provider, principalFrom(ctx), "id", req.GetId())
	if err != nil {
		return nil, s.toStatus(ctx, "get provider", err)
	}
	return &adminv1.GetProviderResponse{Provider: providerToProto(pr)}, nil
}

func (s *providerService) ListProviders(ctx context.Context, req *adminv1.ListProvidersRequest) (*adminv1.ListProvidersResponse, error) {
	p := principalFrom(ctx)
	size, err := pageSize(req.GetPageSize())
	if err != nil {
		return nil, badRequest(err)
	}
	after, err := decodeIDToken(req.GetPageToken())
	if err != nil {
		return nil, badRequest(err)
	}
	q := s.store.Client().Provider.Query().Where(provider.IDGT(after)).Order(ent.Asc(provider.FieldID)).Limit(size + 1)
	scope, err := ownerFilter(ctx, s.store.Client(), p, req.GetTenant(), provider.TenantIDIsNil, provider.TenantID, provider.Or)
	if err != nil {
		return nil, s.toStatus(ctx, "list providers", err)
	}
	if scope != nil {
		q.Where(scope)
	}
	rows, err := q.All(ctx)
	if err != nil {
		return nil, s.toStatus(ctx, "list providers", err)
	}
	resp := &adminv1.ListProvidersResponse{}
	resp.Providers, resp.NextPageToken = page(rows, size, providerToProto, func(pr *ent.Provider) string { return encodeIDToken(pr.ID) })
	return resp, nil
}

// ownerFilter returns the predicate that limits a list of platform-or-tenant
// objects to what p may see: for a tenant (given, or the caller's own), its
// objects and the platform's; for the operator without a tenant, everything
// (nil).
func ownerFilter[P ~func(*sql.Selector)](ctx context.Context, c *ent.Client, p Principal, tenantRef string,
	isPlatform func() P, ofTenant func(uuid.UUID) P, or func(...P) P,
) (P, error) {
	var tenantID uuid.UUID
	switch {
	case tenantRef != "":
		t, err := resolveTenant(ctx, c.Tenant, p, "tenant", tenantRef)
		if err != nil {
			return nil, err
		}
		tenantID = t.ID
	case !p.Operator:
		tenantID = p.TenantID
	default:
		return nil, nil
	}
	return or(isPlatform(), ofTenant(tenantID)), nil
}

func (s *providerService) CreateProvider(ctx context.Context, req *adminv1.CreateProviderRequest) (*adminv1.CreateProviderResponse, error) {
	p := principalFrom(ctx)
	in := req.GetProvider()
	if in == nil {
		return nil, badRequest(invalid.Field("provider", "is required"))
	}
	kind, err := providerKindFromProto("provider.kind", in.GetKind())
	errs := []error{err, checkName("provider.name", in.GetName())}
	if err == nil {
		errs = append(errs, checkBaseURL("provider.base_url", in.GetBaseUrl(), kind))
		errs = append(errs, checkAPIVersion(kind, in.GetApiVersion()))
		if needsCredential(kind) && in.GetCredential() == "" {
			errs = append(errs, invalid.Field("provider.credential", "is required for %s providers", kind))
		}
	}
	errs = append(errs, checkCredential(in.GetCredential()))
	if in.GetId() != "" {
		errs = append(errs, invalid.Field("provider.id", "is assigned by the server; leave it empty"))
	}
	if err := errors.Join(errs...); err != nil {
		return nil, badRequest(err)
	}

	id := uuid.New()
	var sealed []byte
	if in.GetCredential() != "" {
		if sealed, err = s.keyring.Seal([]byte(in.GetCredential()), ir.CredentialAD(id)); err != nil {
			return nil, s.toStatus(ctx, "create provider", fmt.Errorf("sealing the credential: %w", err))
		}
	}
	var created *ent.Provider
	err = s.mutate(ctx, func(tx *ent.Tx) error {
		var owner *uuid.UUID
		if in.GetTenantId() != "" {
			t, err := resolveTenant(ctx, tx.Tenant, p, "provider.tenant_id", in.GetTenantId())
			if err != nil {
				return err
			}
			owner = &t.ID
		} else if err := requireOperator(p, "create platform providers (set provider.tenant_id to your tenant)"); err != nil {
			return err
		}
		if err := checkProviderNameFree(ctx, tx, owner, in.GetName(), uuid.Nil); err != nil {
			return err
		}
		c := tx.Provider.Create().
			SetID(id).
			SetNillableTenantID(owner).
			SetName(in.GetName()).
			SetKind(kind).
			SetBaseURL(strings.TrimSuffix(in.GetBaseUrl(), "/")).
			SetAPIVersion(in.GetApiVersion())
		if sealed != nil {
			c.SetCredential(sealed).SetCredentialKeyID(s.keyring.ActiveID())
		}
		if created, err = c.Save(ctx); err != nil {
			return err
		}
		return record(ctx, tx, p, event{action: "provider.create", targetType: "provider", targetID: id, tenantID: owner})
	})
	if err != nil {
		return nil, s.toStatus(ctx, "create provider", err)
	}
	return &adminv1.CreateProviderResponse{Provider: providerToProto(created)}, nil
}

func checkAPIVersion(kind provider.Kind, v string) error {
	switch {
	case kind == provider.KindAzureOpenai && v == "":
		return invalid.Field("provider.api_version", "is required for Azure OpenAI, e.g. 2024-10-21")
	case kind != provider.KindAzureOpenai && v != "":
		return invalid.Field("provider.api_version", "applies only to Azure OpenAI providers")
	}
	return checkText("provider.api_version", v, 64, false)
}

func checkCredential(v string) error {
	if len(v) > 8192 {
		return invalid.Field("provider.credential", "must be at most 8192 bytes")
	}
	if strings.ContainsAny(v, "\x00\r\n") {
		return invalid.Field("provider.credential", "must be one line (check for a trailing newline)")
	}
	return nil
}

func (s *providerService) UpdateProvider(ctx context.Context, req *adminv1.UpdateProviderRequest) (*adminv1.UpdateProviderResponse, error) {
	p := principalFrom(ctx)
	in := req.GetProvider()
	if in == nil {
		return nil, badRequest(invalid.Field("provider", "is required"))
	}
	paths, err := maskPaths(req.GetUpdateMask(), "name", "base_url", "api_version", "credential")
	if err != nil {
		return nil, badRequest(err)
	}
	var updated *ent.Provider
	err = s.mutate(ctx, func(tx *ent.Tx) error {
		pr, err := getProvider(ctx, tx.Provider, p, "provider.id", in.GetId())
		if err != nil {
			return err
		}
		if !writable(p, pr.TenantID) {
			return status.Error(codes.PermissionDenied, "only the operator may change platform providers")
		}
		var errs []error
		for _, path := range paths {
			switch path {
			case "name":
				errs = append(errs, checkName("provider.name", in.GetName()))
			case "base_url":
				errs = append(errs, checkBaseURL("provider.base_url", in.GetBaseUrl(), pr.Kind))
			case "api_version":
				errs = append(errs, checkAPIVersion(pr.Kind, in.GetApiVersion()))
			case "credential":
				errs = append(errs, checkCredential(in.GetCredential()))
				if needsCredential(pr.Kind) && in.GetCredential() == "" {
					errs = append(errs, invalid.Field("provider.credential", "is required for %s providers", pr.Kind))
				}
			}
		}
		if err := errors.Join(errs...); err != nil {
			return err
		}
		u := tx.Provider.UpdateOne(pr)
		for _, path := range paths {
			switch path {
			case "name":
				if err := checkProviderNameFree(ctx, tx, pr.TenantID, in.GetName(), pr.ID); err != nil {
					return err
				}
				u.SetName(in.GetName())
			case "base_url":
				u.SetBaseURL(strings.TrimSuffix(in.GetBaseUrl(), "/"))
			case "api_version":
				u.SetAPIVersion(in.GetApiVersion())
			case "credential":
				if in.GetCredential() == "" {
					u.ClearCredential().SetCredentialKeyID("")
					continue
				}
				sealed, err := s.keyring.Seal([]byte(in.GetCredential()), ir.CredentialAD(pr.ID))
				if err != nil {
					return fmt.Errorf("sealing the credential: %w", err)
				}
				u.SetCredential(sealed).SetCredentialKeyID(s.keyring.ActiveID())
			}
		}
		if updated, err = u.Save(ctx); err != nil {
			return err
		}
		return record(ctx, tx, p, event{action: "provider.update", targetType: "provider", targetID: pr.ID, tenantID: pr.TenantID, fields: paths})
	})
	if err != nil {
		return nil, s.toStatus(ctx, "update provider", err)
	}
	return &adminv1.UpdateProviderResponse{Provider: providerToProto(updated)}, nil
}

func (s *providerService) DeleteProvider(ctx context.Context, req *adminv1.DeleteProviderRequest) (*adminv1.DeleteProviderResponse, error) {
	p := principalFrom(ctx)
	err := s.mutate(ctx, func(tx *ent.Tx) error {
		pr, err := getProvider(ctx, tx.Provider, p, "id", req.GetId())
		if err != nil {
			return err
		}
		if !writable(p, pr.TenantID) {
			return status.Error(codes.PermissionDenied, "only the operator may delete platform providers")
		}
		n, err := tx.ModelDeployment.Query().Where(modeldeployment.ProviderID(pr.ID)).Count(ctx)
		if err != nil {
			return err
		}
		if n > 0 {
			return status.Errorf(codes.FailedPrecondition, "provider %q still serves %d model deployment(s); remove them from their models first", pr.Name, n)
		}
		if err := tx.Provider.DeleteOne(pr).Exec(ctx); err != nil {
			return err
		}
		return record(ctx, tx, p, event{action: "provider.delete", targetType: "provider", targetID: pr.ID, tenantID: pr.TenantID})
	})
	if err != nil {
		return nil, s.toStatus(ctx, "delete provider", err)
	}
	return &adminv1.DeleteProviderResponse{}, nil
}
