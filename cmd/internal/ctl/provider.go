package ctl

import (
	"context"

	"github.com/spf13/cobra"

	adminv1 "github.com/tollgate-dev/tollgate/api/tollgate/admin/v1"
)

var providerKinds = map[string]adminv1.ProviderKind{
	"openai":            adminv1.ProviderKind_PROVIDER_KIND_OPENAI,
	"anthropic":         adminv1.ProviderKind_PROVIDER_KIND_ANTHROPIC,
	"gemini":            adminv1.ProviderKind_PROVIDER_KIND_GEMINI,
	"azure_openai":      adminv1.ProviderKind_PROVIDER_KIND_AZURE_OPENAI,
	"openai_compatible": adminv1.ProviderKind_PROVIDER_KIND_OPENAI_COMPATIBLE,
}

func (c *cli) providerCmd() *cobra.Command {
	return resource("provider", "providers", "Manage upstream model APIs and their credentials",
		c.providerList(), c.providerGet(), c.providerCreate(), c.providerUpdate(), c.providerDelete())
}

func (c *cli) providers() (adminv1.ProviderServiceClient, error) {
	conn, err := c.connect()
	if err != nil {
		return nil, err
	}
	return adminv1.NewProviderServiceClient(conn), nil
}

// providerTable shows whether a credential is stored, never the credential:
// the API does not return it.
func providerTable(t *table, providers ...*adminv1.Provider) {
	t.row("ID", "TENANT", "NAME", "KIND", "BASE_URL", "API_VERSION", "CREDENTIAL", "CREATED")
	for _, p := range providers {
		t.row(p.GetId(), p.GetTenantId(), p.GetName(), enumName(p.GetKind(), "PROVIDER_KIND_"),
			p.GetBaseUrl(), p.GetApiVersion(), yesNo(p.GetHasCredential()), timestamp(p.GetCreateTime()))
	}
}

func (c *cli) providerList() *cobra.Command {
	var tenant string
	var limit int
	cmd := &cobra.Command{
		Use:   "list",
		Short: "List providers",
		Example: `  tollgatectl providers list
  tollgatectl providers list --tenant acme`,
		Args: exactArgs(),
		RunE: action(func(cmd *cobra.Command, args []string) error {
			client, err := c.providers()
			if err != nil {
				return err
			}
			req := &adminv1.ListProvidersRequest{Tenant: tenant}
			all, err := collect(cmd.Context(), limit, func(ctx context.Context, size int32, token string) ([]*adminv1.Provider, string, error) {
				req.PageSize, req.PageToken = size, token
				resp, err := client.ListProviders(ctx, req)
				return resp.GetProviders(), resp.GetNextPageToken(), err
			})
			if err != nil {
				return err
			}
			return c.print(&adminv1.ListProvidersResponse{Providers: all}, func(t *table) { providerTable(t, all...) })
		}),
	}
	f := cmd.Flags()
	f.StringVar(&tenant, "tenant", "", "only the providers this tenant (slug or id) owns, and the platform's")
	limitFlag(f, &limit)
	return cmd
}

func (c *cli) providerGet() *cobra.Command {
	return &cobra.Command{
		Use:     "get ID",
		Short:   "Show one provider (never its credential)",
		Example: `  tollgatectl provider get 3c9e1f4a-6b7d-4e2f-9a1b-8c7d6e5f4a3b`,
		Args:    exactArgs("ID"),
		RunE: action(func(cmd *cobra.Command, args []string) error {
			client, err := c.providers()
			if err != nil {
				return err
			}
			resp, err := client.GetProvider(cmd.Context(), &adminv1.GetProviderRequest{Id: args[0]})
			if err != nil {
				return err
			}
			return c.print(resp, func(t *table) { providerTable(t, resp.GetProvider()) })
		}),
	}
}

func (c *cli) providerCreate() *cobra.Command {
	var kind, tenant string
	var cred credentialFlags
	provider := &adminv1.Provider{}
	cmd := &cobra.Command{
		Use:   "create --name N --kind KIND --base-url URL",
		Short: "Add an upstream model API",
		Long: `Add an upstream model API. KIND is openai, anthropic, gemini, azure_openai or
openai_compatible (any server with OpenAI's API: Mistral, Groq, vLLM, Ollama).

The API key is read from a file, an environment variable or standard input,
never from a flag value, which would be kept in shell history. It is stored
encrypted and no command shows it again. Without --tenant the provider belongs
to the platform and may serve every tenant.`,
		Example: `  tollgatectl provider create --name openai --kind openai --base-url https://api.openai.com --credential-env OPENAI_API_KEY
  pass show anthropic | tollgatectl provider create --name anthropic --kind anthropic --base-url https://api.anthropic.com --credential-stdin
  tollgatectl provider create --name local --kind openai_compatible --base-url http://127.0.0.1:11434 --tenant acme`,
		Args: exactArgs(),
		RunE: action(func(cmd *cobra.Command, args []string) error {
			if provider.Name == "" {
				return usagef("--name is required")
			}
			if kind == "" {
				return usagef("--kind is required")
			}
			if provider.BaseUrl == "" {
				return usagef("--base-url is required")
			}
			var err error
			if provider.Kind, err = parseEnum("kind", kind, providerKinds); err != nil {
				return err
			}
			withCred, err := cred.given(cmd.Flags())
			if err != nil {
				return err
			}
			if withCred {
				if provider.Credential, err = cred.read(c.stdin); err != nil {
					return err
				}
			}
			if provider.TenantId, err = c.tenantID(cmd.Context(), tenant); err != nil {
				return err
			}
			client, err := c.providers()
			if err != nil {
				return err
			}
			resp, err := client.CreateProvider(cmd.Context(), &adminv1.CreateProviderRequest{Provider: provider})
			if err != nil {
				return err
			}
			return c.print(resp, func(t *table) { providerTable(t, resp.GetProvider()) })
		}),
	}
	f := cmd.Flags()
	f.StringVar(&provider.Name, "name", "", "unique name: lower-case letters, digits and hyphens (required)")
	f.StringVar(&kind, "kind", "", "openai, anthropic, gemini, azure_openai or openai_compatible (required)")
	f.StringVar(&provider.BaseUrl, "base-url", "", "the API's base URL, e.g. https://api.openai.com (required)")
	f.StringVar(&tenant, "tenant", "", "the owning tenant's slug or id (default: a platform provider)")
	f.StringVar(&provider.ApiVersion, "api-version", "", "Azure OpenAI's api-version")
	cred.register(f)
	return cmd
}

func (c *cli) providerUpdate() *cobra.Command {
	var cred credentialFlags
	provider := &adminv1.Provider{}
	cmd := &cobra.Command{
		Use:   "update ID",
		Short: "Change a provider, or rotate its credential",
		Long: `Change a provider. Only the flags given are changed; its kind and owner are
fixed at creation. A --credential-* flag replaces the stored API key.`,
		Example: `  tollgatectl provider update 3c9e1f4a-6b7d-4e2f-9a1b-8c7d6e5f4a3b --credential-file ./new-openai-key
  tollgatectl provider update 3c9e1f4a-6b7d-4e2f-9a1b-8c7d6e5f4a3b --api-version 2024-10-21`,
		Args: exactArgs("ID"),
		RunE: action(func(cmd *cobra.Command, args []string) error {
			mask, err := updateMask(cmd.Flags(), []flagPath{
				{"name", "name"},
				{"base-url", "base_url"},
				{"api-version", "api_version"},
				{"credential-file", "credential"},
				{"credential-env", "credential"},
				{"credential-stdin", "credential"},
			})
			if err != nil {
				return err
			}
			withCred, err := cred.given(cmd.Flags())
			if err != nil {
				return err
			}
			if withCred {
				if provider.Credential, err = cred.read(c.stdin); err != nil {
					return err
				}
			}
			provider.Id = args[0]
			client, err := c.providers()
			if err != nil {
				return err
			}
			resp, err := client.UpdateProvider(cmd.Context(), &adminv1.UpdateProviderRequest{Provider: provider, UpdateMask: mask})
			if err != nil {
				return err
			}
			return c.print(resp, func(t *table) { providerTable(t, resp.GetProvider()) })
		}),
	}
	f := cmd.Flags()
	f.StringVar(&provider.Name, "name", "", "unique name: lower-case letters, digits and hyphens")
	f.StringVar(&provider.BaseUrl, "base-url", "", "the API's base URL")
	f.StringVar(&provider.ApiVersion, "api-version", "", "Azure OpenAI's api-version")
	cred.register(f)
	return cmd
}

func (c *cli) providerDelete() *cobra.Command {
	return &cobra.Command{
		Use:     "delete ID",
		Short:   "Delete a provider that serves no model",
		Example: `  tollgatectl provider delete 3c9e1f4a-6b7d-4e2f-9a1b-8c7d6e5f4a3b`,
		Args:    exactArgs("ID"),
		RunE: action(func(cmd *cobra.Command, args []string) error {
			client, err := c.providers()
			if err != nil {
				return err
			}
			resp, err := client.DeleteProvider(cmd.Context(), &adminv1.DeleteProviderRequest{Id: args[0]})
			if err != nil {
				return err
			}
			return c.printDeleted(resp, "provider", args[0])
		}),
	}
}
