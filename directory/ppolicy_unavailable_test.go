package directory

import (
	"context"
	"errors"
	"fmt"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2"
	ber "github.com/go-asn1-ber/asn1-ber"
	"github.com/go-ldap/ldap/v3"
)

// fakeLDAP is an LDAP server for the tests of answers slapd cannot be made
// to give: it binds anyone, answers a search under policyDN with
// policyCode, the search for hank with his entry, and any other with
// nothing. It listens on a loopback port in 20000-24999.
func fakeLDAP(t *testing.T, policyDN string, policyCode uint16) string {
	t.Helper()
	var l net.Listener
	for port := 20000 + int(time.Now().UnixNano()%4000); l == nil; port++ {
		var err error
		if l, err = net.Listen("tcp", fmt.Sprintf("127.0.0.1:%d", port)); err != nil && port > 24990 {
			t.Fatal(err)
		}
	}
	t.Cleanup(func() { l.Close() })
	result := func(id int64, op ber.Tag, code uint16) *ber.Packet {
		msg := ber.Encode(ber.ClassUniversal, ber.TypeConstructed, ber.TagSequence, nil, "")
		msg.AppendChild(ber.NewInteger(ber.ClassUniversal, ber.TypePrimitive, ber.TagInteger, id, ""))
		res := ber.Encode(ber.ClassApplication, ber.TypeConstructed, op, nil, "")
		res.AppendChild(ber.NewInteger(ber.ClassUniversal, ber.TypePrimitive, ber.TagEnumerated, int64(code), ""))
		res.AppendChild(ber.NewString(ber.ClassUniversal, ber.TypePrimitive, ber.TagOctetString, "", ""))
		res.AppendChild(ber.NewString(ber.ClassUniversal, ber.TypePrimitive, ber.TagOctetString, "", ""))
		msg.AppendChild(res)
		return msg
	}
	entry := func(id int64, dn string, attrs map[string]string) *ber.Packet {
		msg := ber.Encode(ber.ClassUniversal, ber.TypeConstructed, ber.TagSequence, nil, "")
		msg.AppendChild(ber.NewInteger(ber.ClassUniversal, ber.TypePrimitive, ber.TagInteger, id, ""))
		e := ber.Encode(ber.ClassApplication, ber.TypeConstructed, ldap.ApplicationSearchResultEntry, nil, "")
		e.AppendChild(ber.NewString(ber.ClassUniversal, ber.TypePrimitive, ber.TagOctetString, dn, ""))
		list := ber.Encode(ber.ClassUniversal, ber.TypeConstructed, ber.TagSequence, nil, "")
		for name, value := range attrs {
			a := ber.Encode(ber.ClassUniversal, ber.TypeConstructed, ber.TagSequence, nil, "")
			a.AppendChild(ber.NewString(ber.ClassUniversal, ber.TypePrimitive, ber.TagOctetString, name, ""))
			set := ber.Encode(ber.ClassUniversal, ber.TypeConstructed, ber.TagSet, nil, "")
			set.AppendChild(ber.NewString(ber.ClassUniversal, ber.TypePrimitive, ber.TagOctetString, value, ""))
			a.AppendChild(set)
			list.AppendChild(a)
		}
		e.AppendChild(list)
		msg.AppendChild(e)
		return msg
	}
	serve := func(c net.Conn) {
		defer c.Close()
		for {
			p, err := ber.ReadPacket(c)
			if err != nil || len(p.Children) < 2 {
				return
			}
			id, _ := p.Children[0].Value.(int64)
			op := p.Children[1]
			var out []*ber.Packet
			switch op.Tag {
			case ldap.ApplicationBindRequest:
				out = append(out, result(id, ldap.ApplicationBindResponse, ldap.LDAPResultSuccess))
			case ldap.ApplicationSearchRequest:
				base, _ := op.Children[0].Value.(string)
				filter, _ := ldap.DecompileFilter(op.Children[6])
				switch {
				case strings.EqualFold(base, policyDN):
					out = append(out, result(id, ldap.ApplicationSearchResultDone, policyCode))
				case strings.Contains(filter, "hank") && !strings.Contains(strings.ToLower(filter), "member"):
					out = append(out, entry(id, "uid=hank,ou=people,dc=x", map[string]string{"uid": "hank", "entryUUID": "1"}),
						result(id, ldap.ApplicationSearchResultDone, ldap.LDAPResultSuccess))
				default:
					out = append(out, result(id, ldap.ApplicationSearchResultDone, ldap.LDAPResultSuccess))
				}
			default: // unbind, abandon
				return
			}
			for _, o := range out {
				if _, err := c.Write(o.Bytes()); err != nil {
					return
				}
			}
		}
	}
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			go serve(c)
		}
	}()
	return "ldap://" + l.Addr().String()
}

// TestAPolicySearchNotAnsweredIsUnavailable: a search of the
// default_password_policy entry that the directory did not carry out (a
// time or administrative limit hit, an internal error: a busy or failing
// server) is the directory unavailable, as the account's own search is,
// and is not cached: it was taken for an entry that cannot be read, and
// every account under the default policy was refused (their keys, tokens
// and sessions with them) for status_ttl, by one transient answer. An
// entry the directory says is not there is still unreadable.
func TestAPolicySearchNotAnsweredIsUnavailable(t *testing.T) {
	const policy = "cn=default,ou=policies,dc=x"
	for _, code := range []uint16{ldap.LDAPResultTimeLimitExceeded, ldap.LDAPResultAdminLimitExceeded, ldap.LDAPResultOther, ldap.LDAPResultOperationsError} {
		d, err := New(Config{URLs: []string{fakeLDAP(t, policy, code)}, Flavor: OpenLDAP, BindDN: "cn=svc,dc=x", BindPassword: "p",
			BaseDN: "dc=x", DefaultPasswordPolicy: policy, StatusTTL: caddy.Duration(time.Hour), Timeout: caddy.Duration(5 * time.Second)}, nil, nil)
		if err != nil {
			t.Fatal(err)
		}
		if err := d.CheckDefaultPolicy(); !errors.Is(err, ErrUnavailable) {
			t.Errorf("result code %d for the policy search: CheckDefaultPolicy %v; want unavailable", code, err)
		}
		if e, err := d.Refresh(context.Background(), "hank"); !errors.Is(err, ErrUnavailable) {
			t.Errorf("result code %d for the policy search: hank %+v, %v; want unavailable, not a refusal", code, e, err)
		}
		d.Close()
	}
	d, err := New(Config{URLs: []string{fakeLDAP(t, policy, ldap.LDAPResultNoSuchObject)}, Flavor: OpenLDAP, BindDN: "cn=svc,dc=x", BindPassword: "p",
		BaseDN: "dc=x", DefaultPasswordPolicy: policy, StatusTTL: caddy.Duration(time.Hour), Timeout: caddy.Duration(5 * time.Second)}, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	if e, err := d.Refresh(context.Background(), "hank"); err != nil || e.Problem != ProblemPolicyUnreadable {
		t.Errorf("no such policy entry: hank %+v, %v; want refused, %q", e, err, ProblemPolicyUnreadable)
	}
}
