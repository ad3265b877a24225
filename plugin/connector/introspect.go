package connector

import (
	"encoding/json"
	"errors"
	"net/http"

	"github.com/gatehouse-auth/gatehouse/failure"
	"github.com/gatehouse-auth/gatehouse/identity"
)

// introspection is the answer of the introspection endpoint (RFC 7662
// §2.2). An inactive token's answer holds only Active.
type introspection struct {
	Active    bool   `json:"active"`
	TokenType string `json:"token_type,omitempty"`
	ClientID  string `json:"client_id,omitempty"`
	Subject   string `json:"sub,omitempty"`
	Username  string `json:"username,omitempty"`
	IssuedAt  int64  `json:"iat,omitempty"`
	Expiry    int64  `json:"exp,omitempty"`
	// Confirmation is the RFC 8705 §3.2 binding: the thumbprint of the
	// certificate the token is bound to.
	Confirmation *confirmation `json:"cnf,omitempty"`
}

type confirmation struct {
	X5tS256 string `json:"x5t#S256"`
}

// serveIntrospect is token introspection (RFC 7662) for a connector's own
// access token: POST over TLS with the connector's current certificate
// (the client authentication of RFC 8705 §2), the form body token=<access
// token> (token_type_hint is ignored; the token is refused in the query
// string). A live access token bound to the presented certificate, of an
// active account, is {"active":true, token_type, client_id (the
// connector), sub and username, iat, exp, cnf:{"x5t#S256"}}; any other
// token — unknown, expired, revoked, a refresh token, another
// connector's — is {"active":false}, so a connector learns nothing about
// tokens that are not its own.
func (p *Plugin) serveIntrospect(w http.ResponseWriter, r *http.Request) {
	answer, err := p.introspect(w, r)
	if err != nil {
		var oerr *oauthError
		if !errors.As(err, &oerr) {
			oerr = p.internalError(err)
		}
		writeOAuthError(w, oerr)
		return
	}
	body, _ := json.Marshal(answer)
	h := w.Header()
	h.Set("Content-Type", "application/json")
	h.Set("Cache-Control", "no-store")
	w.WriteHeader(http.StatusOK)
	w.Write(body)
}

func (p *Plugin) introspect(w http.ResponseWriter, r *http.Request) (introspection, error) {
	body, oerr := readPost(w, r, "introspection")
	if oerr != nil {
		return introspection{}, oerr
	}
	rp, oerr := readParams(r.URL.RawQuery, r.Header.Get("Content-Type"), body, queryCredentials...)
	if oerr != nil {
		return introspection{}, oerr
	}
	token, oerr := rp.single("token")
	if oerr != nil {
		return introspection{}, oerr
	}
	if token == "" {
		return introspection{}, invalidRequest("token is required")
	}
	leaf := peerCertificate(r)
	if leaf == nil {
		return introspection{}, invalidClient("present the connector's client certificate on the TLS connection")
	}
	if _, err := CertificateConnector(leaf); err != nil {
		return introspection{}, invalidClient("the client certificate was not issued for connector use")
	}
	if !parseToken(token, accessTokenPrefix) {
		return introspection{}, nil
	}
	ctx := r.Context()
	rec, err := p.boundAccessToken(ctx, token, leaf)
	if _, refused := identity.AsRefusal(err); refused {
		return introspection{}, nil
	}
	if err != nil {
		return introspection{}, err
	}
	u, err := p.engine.Accounts.User(ctx, rec.Username)
	switch {
	case errors.Is(err, failure.ErrNotFound) || (err == nil && (u.ID != rec.UserID || !u.Active() || u.TokenEpoch != rec.TokenEpoch)):
		return introspection{}, nil
	case err != nil:
		return introspection{}, err
	}
	return introspection{Active: true, TokenType: "Bearer", ClientID: rec.Connector, Subject: rec.Username,
		Username: rec.Username, IssuedAt: rec.IssuedAt.Unix(), Expiry: rec.ExpiresAt.Unix(),
		Confirmation: &confirmation{X5tS256: rec.X5tS256}}, nil
}
