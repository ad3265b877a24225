package esa

import (
	"context"
	"crypto/rand"
	"crypto/subtle"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"time"

	"github.com/gatehouse-auth/gatehouse/account"
	"github.com/gatehouse-auth/gatehouse/adminapi"
	"github.com/gatehouse-auth/gatehouse/engine"
	"github.com/gatehouse-auth/gatehouse/failure"
	"github.com/gatehouse-auth/gatehouse/plugin/twofactor"
	"github.com/gatehouse-auth/gatehouse/storage"
	"github.com/gatehouse-auth/gatehouse/storage/cache"
)

// API names one of the two ESA APIs a credential may be enabled for.
type API uint8

// The ESA APIs.
const (
	// AuthAPI is /auth/v1/ (start2fa, authenticate).
	AuthAPI API = iota + 1
	// UserManagementAPI is /manage/users/v1/.
	UserManagementAPI
)

const (
	credPrefix      = "esa-cred/"
	credUserPrefix  = "esa-cred-user/" //nolint:gosec // G101: a store key prefix, not a credential
	passwordPurpose = "esa-api-password"
)

// Credential is a stored API credential. Only a keyed digest of the
// password is kept.
type Credential struct {
	// Name is the credential's unique name, chosen by the admin.
	Name string `json:"name"`
	// Username is the generated API username ("esa-" and 16 hex digits)
	// clients present with HTTP Basic.
	Username string `json:"username"`
	// PasswordDigest is the keyed digest of the password (Keystore.Index);
	// the password itself is never stored.
	PasswordDigest string `json:"password_digest"`
	// DigestKey names the keystore index key PasswordDigest was made with
	// (keystore.Keystore.IndexKeyID); empty for the legacy key, that of a
	// keystore never re-keyed. After a rekey the digest is kept under the
	// retired key, and made again under the current one at the
	// credential's next successful use.
	DigestKey string `json:"digest_key,omitempty"`
	// AuthAPI enables the credential for the auth API (/auth/v1/).
	AuthAPI bool `json:"auth_api"`
	// UserManagementAPI enables the credential for the user management API
	// (/manage/users/v1/).
	UserManagementAPI bool `json:"user_management_api"`
	// CreatedAt is when the credential was created (UTC).
	CreatedAt time.Time `json:"created_at"`
}

// enabled reports whether the credential may call api.
func (c *Credential) enabled(api API) bool {
	return (api == AuthAPI && c.AuthAPI) || (api == UserManagementAPI && c.UserManagementAPI)
}

// CredentialView is a credential as the admin API lists it.
type CredentialView struct {
	// Name is the credential's unique name.
	Name string `json:"name"`
	// Username is the API username clients present with HTTP Basic.
	Username string `json:"username"`
	// AuthAPI reports whether the credential may call the auth API.
	AuthAPI bool `json:"auth_api"`
	// UserManagementAPI reports whether the credential may call the user
	// management API.
	UserManagementAPI bool `json:"user_management_api"`
	// CreatedAt is when the credential was created (UTC).
	CreatedAt time.Time `json:"created_at"`
}

func (c *Credential) view() CredentialView {
	return CredentialView{Name: c.Name, Username: c.Username, AuthAPI: c.AuthAPI,
		UserManagementAPI: c.UserManagementAPI, CreatedAt: c.CreatedAt}
}

// NewCredentialView answers a creation: the only time the password is shown.
type NewCredentialView struct {
	CredentialView
	// Password is shown once and never stored.
	Password string `json:"password"`
}

// Credentials manages ESA API credentials in the store.
type Credentials struct {
	engine *engine.Engine
}

// NewCredentials returns the credential manager of e.
func NewCredentials(e *engine.Engine) *Credentials { return &Credentials{engine: e} }

func decodeCredential(b []byte) (*Credential, error) {
	c := new(Credential)
	return c, json.Unmarshal(b, c)
}

func decodeName(b []byte) (string, error) { return string(b), nil }

// digest returns the keyed digest of password under the current index
// key, and the key's name for Credential.DigestKey.
func (cs *Credentials) digest(password string) (digest, key string) {
	return cs.engine.Keystore.Index(passwordPurpose, []byte(password)), cs.digestKey()
}

// digestKey is Credential.DigestKey of a digest made now.
func (cs *Credentials) digestKey() string {
	if ks := cs.engine.Keystore; !ks.Legacy() {
		return ks.IndexKeyID()
	}
	return ""
}

// CredentialPepper reads a stored credential record (esa-cred/<name>)
// for the rekey report: its name and the index key its digest was made
// with (Credential.DigestKey).
func CredentialPepper(raw []byte) (name, key string, err error) {
	c, err := decodeCredential(raw)
	if err != nil {
		return "", "", err
	}
	return c.Name, c.DigestKey, nil
}

// CredentialPrefix starts the store key of every credential record.
const CredentialPrefix = credPrefix

// redigest replaces the digest of c, made under a retired index key,
// with one under the current key, once password matched it. Best
// effort: a failure leaves the old digest, tried again next time.
func (cs *Credentials) redigest(ctx context.Context, c *Credential, password string) {
	digest, key := cs.digest(password)
	_, _ = storage.UpdateJSON(ctx, cs.engine.Store, credPrefix+c.Name, 0, func(cur *Credential) (*Credential, error) {
		if cur == nil || cur.Username != c.Username || cur.PasswordDigest != c.PasswordDigest || cur.DigestKey != c.DigestKey {
			return nil, storage.ErrNoChange
		}
		cur.PasswordDigest, cur.DigestKey = digest, key
		return cur, nil
	})
}

// errBadCredentials is the one answer for an unknown username or a wrong
// password.
var errBadCredentials = errors.New("unknown API credentials")

// Check verifies an API username and password (from the cache on a hit)
// and returns the credential, errBadCredentials, or a store error.
func (cs *Credentials) Check(ctx context.Context, username, password string) (*Credential, error) {
	name, err := cache.Load(cs.engine.Store, ctx, credUserPrefix+username, decodeName)
	var c *Credential
	if err == nil {
		c, err = cache.Load(cs.engine.Store, ctx, credPrefix+name, decodeCredential)
	}
	if errors.Is(err, storage.ErrNotFound) {
		cs.digest(password) // same cost as a real check
		return nil, errBadCredentials
	}
	if err != nil {
		return nil, err
	}
	// The digest under the key it was made with: the current one, or one
	// a rekey retired (none, once the operator dropped it).
	got, ok := cs.engine.Keystore.IndexWith(c.DigestKey, passwordPurpose, []byte(password))
	if !ok || subtle.ConstantTimeCompare([]byte(got), []byte(c.PasswordDigest)) != 1 || c.Username != username {
		return nil, errBadCredentials
	}
	if c.DigestKey != cs.digestKey() {
		cs.redigest(ctx, c, password)
	}
	return c, nil
}

// CreateRequest is the body of POST /gatehouse/api-credentials: the
// credential's name and the APIs it is enabled for.
type CreateRequest struct {
	// Name is the new credential's unique name.
	Name string `json:"name"`
	// AuthAPI enables the credential for the auth API; at least one of
	// AuthAPI and UserManagementAPI must be true.
	AuthAPI bool `json:"auth_api"`
	// UserManagementAPI enables the credential for the user management API.
	UserManagementAPI bool `json:"user_management_api"`
}

// Create makes a new credential with a random username and password.
func (cs *Credentials) Create(ctx context.Context, in CreateRequest) (*NewCredentialView, error) {
	if err := account.ValidateName("API credential", in.Name); err != nil {
		return nil, err
	}
	if !in.AuthAPI && !in.UserManagementAPI {
		return nil, failure.Invalid("enable the credential for auth_api, user_management_api or both")
	}
	username := "esa-" + randomHex(8)
	password := twofactor.RandomToken(32)
	digest, key := cs.digest(password)
	c := &Credential{Name: in.Name, Username: username, PasswordDigest: digest, DigestKey: key, AuthAPI: in.AuthAPI,
		UserManagementAPI: in.UserManagementAPI, CreatedAt: time.Now().UTC()}
	raw, _ := json.Marshal(c)
	created, err := cs.engine.Store.CompareAndSwap(ctx, credPrefix+c.Name, nil, raw, 0)
	if err != nil {
		return nil, err
	}
	if !created {
		return nil, failure.Conflict("API credential %q already exists", c.Name)
	}
	if err := cs.engine.Store.Put(ctx, credUserPrefix+username, []byte(c.Name), 0); err != nil {
		_ = cs.engine.Store.Delete(ctx, credPrefix+c.Name) // best effort; the Put's error is the answer
		return nil, err
	}
	return &NewCredentialView{CredentialView: c.view(), Password: password}, nil
}

// List returns every credential in name order.
func (cs *Credentials) List(ctx context.Context) ([]CredentialView, error) {
	out := []CredentialView{}
	err := cs.engine.Store.Scan(ctx, credPrefix, func(e storage.Entry) error {
		c, err := decodeCredential(e.Value)
		if err != nil {
			return fmt.Errorf("decoding %s: %w", e.Key, err)
		}
		out = append(out, c.view())
		return nil
	})
	return out, err
}

// Delete removes a credential; requests made with it are refused at once.
func (cs *Credentials) Delete(ctx context.Context, name string) error {
	raw, err := cs.engine.Store.Get(ctx, credPrefix+name)
	if errors.Is(err, storage.ErrNotFound) {
		return failure.NotFound("API credential %q not found", name)
	}
	if err != nil {
		return err
	}
	c, err := decodeCredential(raw)
	if err != nil {
		return fmt.Errorf("decoding API credential %q: %v", name, err)
	}
	return cs.engine.Store.Batch(ctx, []storage.Op{
		{Kind: storage.OpDelete, Key: credPrefix + name},
		{Kind: storage.OpDelete, Key: credUserPrefix + c.Username},
	})
}

// AdminRoutes implements adminapi.Provider.
func (cs *Credentials) AdminRoutes() []adminapi.Route {
	return []adminapi.Route{
		{Pattern: "POST /gatehouse/api-credentials", Handle: func(w http.ResponseWriter, r *http.Request) error {
			var in CreateRequest
			if err := adminapi.DecodeJSON(r, &in); err != nil {
				return err
			}
			out, err := cs.Create(r.Context(), in)
			if err != nil {
				return err
			}
			adminapi.Note(r, "", fmt.Sprintf("API credential %s created (auth_api %t, user_management_api %t)", in.Name, in.AuthAPI, in.UserManagementAPI))
			return adminapi.WriteJSON(w, http.StatusCreated, out)
		}, Body: true},
		{Pattern: "GET /gatehouse/api-credentials", Handle: func(w http.ResponseWriter, r *http.Request) error {
			list, err := cs.List(r.Context())
			if err != nil {
				return err
			}
			return adminapi.WriteJSON(w, http.StatusOK, list)
		}},
		{Pattern: "DELETE /gatehouse/api-credentials/{name}", Handle: func(w http.ResponseWriter, r *http.Request) error {
			adminapi.Note(r, "", "API credential "+r.PathValue("name")+" deleted")
			if err := cs.Delete(r.Context(), r.PathValue("name")); err != nil {
				return err
			}
			w.WriteHeader(http.StatusNoContent)
			return nil
		}},
	}
}

func randomHex(n int) string {
	b := make([]byte, n)
	rand.Read(b)
	return hex.EncodeToString(b)
}
