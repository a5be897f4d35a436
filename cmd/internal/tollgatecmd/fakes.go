package tollgatecmd

import (
	"context"
	"errors"
	"fmt"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"
	"google.golang.org/protobuf/types/known/fieldmaskpb"

	adminv1 "github.com/tollgate-dev/tollgate/api/tollgate/admin/v1"
	"github.com/tollgate-dev/tollgate/test/fakeprovider"
)

// fakeModel is a model `tollgate dev --fake-providers` offers.
type fakeModel struct {
	name     string
	provider fakeprovider.Kind
	upstream string
	in, out  int64 // micro-dollars per million tokens
}

// fakeModels are priced like their real namesakes, so that costs look real.
var fakeModels = []fakeModel{
	{"gpt-4o-mini", fakeprovider.OpenAI, "gpt-4o-mini", 150_000, 600_000},
	{"gpt-4o", fakeprovider.OpenAI, "gpt-4o", 2_500_000, 10_000_000},
	{"text-embedding-3-small", fakeprovider.OpenAI, "text-embedding-3-small", 20_000, 0},
	{"claude-sonnet-4-5", fakeprovider.Anthropic, "claude-sonnet-4-5", 3_000_000, 15_000_000},
	{"gemini-2.5-flash", fakeprovider.Gemini, "gemini-2.5-flash", 300_000, 2_500_000},
}

// startFakes starts one fake server per provider kind and makes the control
// plane route the fake models to them, creating the providers and models
// the first time and pointing them at this run's ports after.
func startFakes(ctx context.Context, adminAddr, operatorToken string) (stop func() error, err error) {
	kinds := []struct {
		kind fakeprovider.Kind
		pk   adminv1.ProviderKind
	}{
		{fakeprovider.OpenAI, adminv1.ProviderKind_PROVIDER_KIND_OPENAI},
		{fakeprovider.Anthropic, adminv1.ProviderKind_PROVIDER_KIND_ANTHROPIC},
		{fakeprovider.Gemini, adminv1.ProviderKind_PROVIDER_KIND_GEMINI},
	}
	var servers []*fakeprovider.Server
	stop = func() error {
		var errs []error
		for _, s := range servers {
			errs = append(errs, s.Close())
		}
		return errors.Join(errs...)
	}
	conn, err := grpc.NewClient(adminAddr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		return stop, err
	}
	defer func() { _ = conn.Close() }() // seeding is over
	ctx = metadata.AppendToOutgoingContext(ctx, "authorization", "Bearer "+operatorToken)
	providerIDs := map[fakeprovider.Kind]string{}
	for _, k := range kinds {
		s, err := fakeprovider.New(k.kind, fakeprovider.Options{})
		if err != nil {
			return stop, fmt.Errorf("starting the fake %s provider: %w", k.kind, err)
		}
		servers = append(servers, s)
		id, err := upsertFakeProvider(ctx, conn, "fake-"+string(k.kind), k.pk, s)
		if err != nil {
			return stop, err
		}
		providerIDs[k.kind] = id
	}
	for _, m := range fakeModels {
		if err := ensureFakeModel(ctx, conn, m, providerIDs[m.provider]); err != nil {
			return stop, err
		}
	}
	return stop, nil
}

func upsertFakeProvider(ctx context.Context, conn *grpc.ClientConn, name string, kind adminv1.ProviderKind, s *fakeprovider.Server) (string, error) {
	pc := adminv1.NewProviderServiceClient(conn)
	list, err := pc.ListProviders(ctx, &adminv1.ListProvidersRequest{PageSize: 1000})
	if err != nil {
		return "", fmt.Errorf("listing providers: %w", err)
	}
	for _, p := range list.GetProviders() {
		if p.GetName() == name && p.GetTenantId() == "" {
			_, err := pc.UpdateProvider(ctx, &adminv1.UpdateProviderRequest{
				Provider:   &adminv1.Provider{Id: p.GetId(), BaseUrl: s.URL(), Credential: s.APIKey()},
				UpdateMask: &fieldmaskpb.FieldMask{Paths: []string{"base_url", "credential"}},
			})
			if err != nil {
				return "", fmt.Errorf("pointing %s at this run's fake: %w", name, err)
			}
			return p.GetId(), nil
		}
	}
	created, err := pc.CreateProvider(ctx, &adminv1.CreateProviderRequest{Provider: &adminv1.Provider{
		Name: name, Kind: kind, BaseUrl: s.URL(), Credential: s.APIKey(),
	}})
	if err != nil {
		return "", fmt.Errorf("creating provider %s: %w", name, err)
	}
	return created.GetProvider().GetId(), nil
}

func ensureFakeModel(ctx context.Context, conn *grpc.ClientConn, m fakeModel, providerID string) error {
	mc := adminv1.NewModelServiceClient(conn)
	list, err := mc.ListModels(ctx, &adminv1.ListModelsRequest{PageSize: 1000})
	if err != nil {
		return fmt.Errorf("listing models: %w", err)
	}
	for _, existing := range list.GetModels() {
		if existing.GetName() == m.name && existing.GetTenantId() == "" {
			return nil // the operator's own definition wins
		}
	}
	_, err = mc.CreateModel(ctx, &adminv1.CreateModelRequest{Model: &adminv1.Model{
		Name:        m.name,
		Deployments: []*adminv1.Deployment{{ProviderId: providerID, UpstreamModel: m.upstream}},
		Pricing:     &adminv1.Pricing{InputMicrosPerMtok: m.in, OutputMicrosPerMtok: m.out},
	}})
	if err != nil {
		return fmt.Errorf("creating model %s: %w", m.name, err)
	}
	return nil
}
