package ctl

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"github.com/spf13/cobra"
	"google.golang.org/protobuf/proto"

	adminv1 "github.com/tollgate-dev/tollgate/api/tollgate/admin/v1"
)

func (c *cli) keyCmd() *cobra.Command {
	return resource("key", "keys", "Manage data-plane API keys",
		c.keyList(), c.keyGet(), c.keyCreate(), c.keyUpdate(), c.keyRotate(), c.keyRevoke(), c.keyDelete())
}

func (c *cli) keys() (adminv1.KeyServiceClient, error) {
	conn, err := c.connect()
	if err != nil {
		return nil, err
	}
	return adminv1.NewKeyServiceClient(conn), nil
}

func keyTable(t *table, keys ...*adminv1.Key) {
	t.row("ID", "TENANT", "NAME", "PREFIX", "MODELS", "ACCOUNT", "EXPIRES", "REVOKED", "LAST_USED", "CREATED")
	for _, k := range keys {
		t.row(k.GetId(), k.GetTenantId(), k.GetName(), k.GetPrefix(), strings.Join(k.GetAllowedModels(), ","),
			k.GetAccountId(), timestamp(k.GetExpireTime()), timestamp(k.GetRevokeTime()),
			timestamp(k.GetLastUsedTime()), timestamp(k.GetCreateTime()))
	}
}

// printSecret prints a create response that carries a secret the API will
// never return again. The note goes to stderr so that stdout stays the
// secret and the row, and the operator sees the note even when stdout is
// redirected to a file.
func (c *cli) printSecret(resp proto.Message, secret string, fill func(t *table)) error {
	if secret == "" {
		// Without this the operator would be left with a key nobody can use.
		return errors.New("the server created it but returned no secret; revoke it and try again")
	}
	c.errorf("Save the secret now: it is shown this once and cannot be retrieved again.\n")
	if c.output == "json" {
		return writeJSON(c.stdout, resp)
	}
	if _, err := fmt.Fprintf(c.stdout, "%s\n\n", secret); err != nil {
		return err
	}
	t := newTable(c.stdout)
	fill(t)
	return t.flush()
}

func (c *cli) keyList() *cobra.Command {
	var tenant string
	var includeRevoked bool
	var limit int
	cmd := &cobra.Command{
		Use:   "list",
		Short: "List API keys",
		Example: `  tollgatectl keys list --tenant acme
  tollgatectl keys list --include-revoked -o json`,
		Args: exactArgs(),
		RunE: action(func(cmd *cobra.Command, args []string) error {
			client, err := c.keys()
			if err != nil {
				return err
			}
			req := &adminv1.ListKeysRequest{Tenant: tenant, IncludeRevoked: includeRevoked}
			all, err := collect(cmd.Context(), limit, func(ctx context.Context, size int32, token string) ([]*adminv1.Key, string, error) {
				req.PageSize, req.PageToken = size, token
				resp, err := client.ListKeys(ctx, req)
				return resp.GetKeys(), resp.GetNextPageToken(), err
			})
			if err != nil {
				return err
			}
			return c.print(&adminv1.ListKeysResponse{Keys: all}, func(t *table) { keyTable(t, all...) })
		}),
	}
	f := cmd.Flags()
	f.StringVar(&tenant, "tenant", "", "only this tenant's keys (slug or id); the operator sees every tenant's without it")
	f.BoolVar(&includeRevoked, "include-revoked", false, "include revoked keys")
	limitFlag(f, &limit)
	return cmd
}

func (c *cli) keyGet() *cobra.Command {
	return &cobra.Command{
		Use:     "get ID",
		Short:   "Show one API key (never its secret)",
		Example: `  tollgatectl key get 5f1d7c1e-8f0a-4b8e-9a57-2d6c0a3e9b11`,
		Args:    exactArgs("ID"),
		RunE: action(func(cmd *cobra.Command, args []string) error {
			client, err := c.keys()
			if err != nil {
				return err
			}
			resp, err := client.GetKey(cmd.Context(), &adminv1.GetKeyRequest{Id: args[0]})
			if err != nil {
				return err
			}
			return c.print(resp, func(t *table) { keyTable(t, resp.GetKey()) })
		}),
	}
}

func (c *cli) keyCreate() *cobra.Command {
	var tenant, expires string
	key := &adminv1.Key{}
	cmd := &cobra.Command{
		Use:   "create --tenant SLUG --name NAME",
		Short: "Create an API key and print its secret once",
		Long: `Create an API key. Its secret is printed once, on the first line of output
(or as "secret" with -o json), and cannot be retrieved again: only its hash is
stored. Clients send it as "Authorization: Bearer <secret>" or
"x-api-key: <secret>".`,
		Example: `  tollgatectl key create --tenant acme --name ci
  tollgatectl key create --tenant acme --name batch --allowed-models gpt-4o-mini,claude-haiku-4-5 --expires 720h
  tollgatectl key create --tenant acme --name ada-laptop --account 0b5c9a5e-2f4e-4c55-8a43-3f0f7b1f4b2a --expires 2026-12-31T00:00:00Z`,
		Args: exactArgs(),
		RunE: action(func(cmd *cobra.Command, args []string) error {
			if tenant == "" {
				return usagef("--tenant is required")
			}
			if key.Name == "" {
				return usagef("--name is required")
			}
			key.AllowedModels = cleanList(key.AllowedModels)
			if cmd.Flags().Changed("expires") {
				var err error
				if key.ExpireTime, err = expiry("expires", expires, c.now()); err != nil {
					return err
				}
			}
			client, err := c.keys()
			if err != nil {
				return err
			}
			resp, err := client.CreateKey(cmd.Context(), &adminv1.CreateKeyRequest{Tenant: tenant, Key: key})
			if err != nil {
				return err
			}
			return c.printSecret(resp, resp.GetSecret(), func(t *table) { keyTable(t, resp.GetKey()) })
		}),
	}
	f := cmd.Flags()
	f.StringVar(&tenant, "tenant", "", "the tenant's slug or id (required)")
	f.StringVar(&key.Name, "name", "", "a name to recognise the key by (required)")
	f.StringSliceVar(&key.AllowedModels, "allowed-models", nil, "public model names the key may use, comma-separated (default: every model the tenant may use)")
	f.StringVar(&expires, "expires", "", "when the key stops working: RFC 3339 time or a duration from now (720h, 30d)")
	f.StringVar(&key.AccountId, "account", "", "the id of the account the key belongs to")
	return cmd
}

func (c *cli) keyUpdate() *cobra.Command {
	var expires string
	key := &adminv1.Key{}
	cmd := &cobra.Command{
		Use:   "update ID",
		Short: "Change an API key",
		Long: `Change an API key. Only the flags given are changed. --allowed-models ""
lets the key use every model its tenant may use; --expires never removes the
expiry.`,
		Example: `  tollgatectl key update 5f1d7c1e-8f0a-4b8e-9a57-2d6c0a3e9b11 --allowed-models gpt-4o-mini
  tollgatectl key update 5f1d7c1e-8f0a-4b8e-9a57-2d6c0a3e9b11 --expires never`,
		Args: exactArgs("ID"),
		RunE: action(func(cmd *cobra.Command, args []string) error {
			mask, err := updateMask(cmd.Flags(), []flagPath{
				{"name", "name"},
				{"allowed-models", "allowed_models"},
				{"expires", "expire_time"},
				{"account", "account_id"},
			})
			if err != nil {
				return err
			}
			key.AllowedModels = cleanList(key.AllowedModels)
			if cmd.Flags().Changed("expires") {
				if key.ExpireTime, err = expiry("expires", expires, c.now()); err != nil {
					return err
				}
			}
			key.Id = args[0]
			client, err := c.keys()
			if err != nil {
				return err
			}
			resp, err := client.UpdateKey(cmd.Context(), &adminv1.UpdateKeyRequest{Key: key, UpdateMask: mask})
			if err != nil {
				return err
			}
			return c.print(resp, func(t *table) { keyTable(t, resp.GetKey()) })
		}),
	}
	f := cmd.Flags()
	f.StringVar(&key.Name, "name", "", "a name to recognise the key by")
	f.StringSliceVar(&key.AllowedModels, "allowed-models", nil, `public model names the key may use, comma-separated; "" for all`)
	f.StringVar(&expires, "expires", "", "RFC 3339 time, a duration from now (720h, 30d), or never")
	f.StringVar(&key.AccountId, "account", "", `the id of the account the key belongs to; "" for none`)
	return cmd
}

func (c *cli) keyRotate() *cobra.Command {
	return &cobra.Command{
		Use:   "rotate ID",
		Short: "Give an API key a new secret",
		Long: `Rotate an API key: it gets a new secret, printed this once, and keeps its id,
name, allowed models, expiry, policy and usage history. The old secret stops
working within about a second.`,
		Example: `  tollgatectl key rotate 5f1d7c1e-8f0a-4b8e-9a57-2d6c0a3e9b11`,
		Args:    exactArgs("ID"),
		RunE: action(func(cmd *cobra.Command, args []string) error {
			client, err := c.keys()
			if err != nil {
				return err
			}
			resp, err := client.RotateKey(cmd.Context(), &adminv1.RotateKeyRequest{Id: args[0]})
			if err != nil {
				return err
			}
			return c.printSecret(resp, resp.GetSecret(), func(t *table) { keyTable(t, resp.GetKey()) })
		}),
	}
}

func (c *cli) keyRevoke() *cobra.Command {
	return &cobra.Command{
		Use:   "revoke ID",
		Short: "Stop an API key from working, for good",
		Long: `Revoke an API key: every request with it is refused from now on. This cannot
be undone; the key stays listed (with --include-revoked) for the record.`,
		Example: `  tollgatectl key revoke 5f1d7c1e-8f0a-4b8e-9a57-2d6c0a3e9b11`,
		Args:    exactArgs("ID"),
		RunE: action(func(cmd *cobra.Command, args []string) error {
			client, err := c.keys()
			if err != nil {
				return err
			}
			resp, err := client.RevokeKey(cmd.Context(), &adminv1.RevokeKeyRequest{Id: args[0]})
			if err != nil {
				return err
			}
			return c.print(resp, func(t *table) { keyTable(t, resp.GetKey()) })
		}),
	}
}

func (c *cli) keyDelete() *cobra.Command {
	return &cobra.Command{
		Use:     "delete ID",
		Short:   "Delete an API key",
		Example: `  tollgatectl key delete 5f1d7c1e-8f0a-4b8e-9a57-2d6c0a3e9b11`,
		Args:    exactArgs("ID"),
		RunE: action(func(cmd *cobra.Command, args []string) error {
			client, err := c.keys()
			if err != nil {
				return err
			}
			resp, err := client.DeleteKey(cmd.Context(), &adminv1.DeleteKeyRequest{Id: args[0]})
			if err != nil {
				return err
			}
			return c.printDeleted(resp, "key", args[0])
		}),
	}
}
