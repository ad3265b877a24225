package strictjson

import (
	"encoding/json"
	"errors"
	"io"
	"strings"
	"testing"
	"time"
)

type inner struct {
	Methods []string `json:"methods"`
}

type embedded struct {
	Note string `json:"note"`
}

type target struct {
	embedded
	Name    string           `json:"name"`
	Rules   []inner          `json:"rules"`
	Labels  map[string]inner `json:"labels"`
	Extra   *inner           `json:"extra,omitempty"`
	When    time.Time        `json:"when"`
	Any     any              `json:"any"`
	Skipped string           `json:"-"`
	Plain   string
}

func TestDecode(t *testing.T) {
	for body, want := range map[string]string{
		`{"name":"a","name":"b"}`: `field "name" appears more than once`,
		`{"NAME":"a"}`:            `unknown field "NAME"; field names are case-sensitive: "name"`,
		`{"rules":[{"methods":[]},{"methods":[],"methods":[]}]}`: `field "rules[1].methods" appears more than once`,
		`{"rules":[{"Methods":[]}]}`:                             `unknown field "rules[0].Methods"; field names are case-sensitive: "methods"`,
		`{"labels":{"x":{"methods":[]},"x":{}}}`:                 `field "labels.x" appears more than once`,
		`{"labels":{"x":{"METHODS":[]}}}`:                        `unknown field "labels.x.METHODS"; field names are case-sensitive: "methods"`,
		`{"extra":{"nope":1}}`:                                   `unknown field "extra.nope"`,
		`{"any":{"a":{"b":1,"b":2}}}`:                            `field "any.a.b" appears more than once`,
		`{"Skipped":"x"}`:                                        `unknown field "Skipped"`,
		`{"plain":"x"}`:                                          `unknown field "plain"; field names are case-sensitive: "Plain"`,
		`{"name":"a"} {}`:                                        ErrTrailing.Error(),
	} {
		var v target
		if err := Decode([]byte(body), &v, RefuseUnknown); err == nil || err.Error() != want {
			t.Errorf("%s: %v, want %q", body, err, want)
		}
	}
	var v target
	body := `{"note":"n","name":"a","rules":[{"methods":["GET"]}],"labels":{"Any Key":{}},"extra":{"methods":[]},` +
		`"when":"2026-01-02T03:04:05Z","any":{"A":1,"a":2},"Plain":"p"}`
	if err := Decode([]byte(body), &v, RefuseUnknown); err != nil || v.Note != "n" || v.Rules[0].Methods[0] != "GET" || v.Plain != "p" {
		t.Fatalf("exact body: %+v, %v", v, err)
	}
	for _, body := range []string{"", " \n"} {
		if err := Decode([]byte(body), &v, RefuseUnknown); !errors.Is(err, io.EOF) {
			t.Errorf("%q: %v, want io.EOF", body, err)
		}
	}
	for _, body := range []string{`{"name":`, `{"rules":[`} {
		if err := Decode([]byte(body), &v, RefuseUnknown); !errors.Is(err, io.ErrUnexpectedEOF) {
			t.Errorf("%q: %v, want io.ErrUnexpectedEOF", body, err)
		}
	}
	var syntax *json.SyntaxError
	if err := Decode([]byte(`{"name":"a",}`), &v, RefuseUnknown); !errors.As(err, &syntax) {
		t.Errorf("trailing comma: %v, want a syntax error", err)
	}
}

func TestDecodeIgnoreUnknown(t *testing.T) {
	var v struct {
		Username string `json:"username"`
	}
	if err := Decode([]byte(`{"username":"bob","client":{"v":1}}`), &v, IgnoreUnknown); err != nil || v.Username != "bob" {
		t.Fatalf("unknown member: %+v, %v", v, err)
	}
	for body, want := range map[string]string{
		`{"username":"bob","USERNAME":"carol"}`: `unknown field "USERNAME"; field names are case-sensitive: "username"`,
		`{"client":1,"client":2}`:               `field "client" appears more than once`,
		`{"client":{"v":1,"v":2}}`:              `field "client.v" appears more than once`,
	} {
		if err := Decode([]byte(body), &v, IgnoreUnknown); err == nil || err.Error() != want {
			t.Errorf("%s: %v, want %q", body, err, want)
		}
	}
}

func TestDecodeIgnoreUnknownAnyCase(t *testing.T) {
	var v struct {
		Username string `json:"username"`
	}
	for _, body := range []string{`{"USERNAME":"bob"}`, `{"UserName":"bob","Client":1}`, `{"username":"bob"}`} {
		v.Username = ""
		if err := Decode([]byte(body), &v, IgnoreUnknownAnyCase); err != nil || v.Username != "bob" {
			t.Errorf("%s: %+v, %v", body, v, err)
		}
	}
	for _, body := range []string{`{"username":"bob","USERNAME":"carol"}`, `{"UserName":"bob","username":"carol"}`} {
		var key *KeyError
		if err := Decode([]byte(body), &v, IgnoreUnknownAnyCase); !errors.As(err, &key) || !key.Duplicate {
			t.Errorf("%s: %v, want a duplicate", body, err)
		}
	}
}

func FuzzDecode(f *testing.F) {
	for _, s := range []string{`{"name":"a","rules":[{"methods":["GET"]}]}`, `{"any":{"a":[{"b":1}]}}`, `[]`, `{"labels":{"x":{}}}`} {
		f.Add(s)
	}
	f.Add(`{"NAME":"a","Rules":[{"METHODS":["GET"]}]}`)
	f.Fuzz(func(t *testing.T, body string) {
		for _, mode := range []Unknown{RefuseUnknown, IgnoreUnknownAnyCase} {
			var v target
			if Decode([]byte(body), &v, mode) != nil {
				continue
			}
			// Accepted: encoding/json reads the same, member for member.
			var loose target
			if err := json.Unmarshal([]byte(body), &loose); err != nil {
				t.Fatalf("accepted %q, which encoding/json refuses: %v", body, err)
			}
			a, _ := json.Marshal(v)
			b, _ := json.Marshal(loose)
			if string(a) != string(b) {
				t.Fatalf("mode %d: %q read as %s, by encoding/json as %s", mode, body, a, b)
			}
		}
	})
}

// TestDepthIsBounded: a body nested MaxDepth levels is checked, one level
// more is refused with ErrTooDeep, and so is a megabyte of brackets, whose
// check before the bound took gigabytes (a frame and a member path per
// level): the refusal allocates next to nothing.
func TestDepthIsBounded(t *testing.T) {
	nested := func(levels int) []byte {
		return []byte(`{"tags":` + strings.Repeat("[", levels-1) + strings.Repeat("]", levels-1) + `}`)
	}
	var v struct {
		Tags any `json:"tags"`
	}
	if err := Decode(nested(MaxDepth), &v, RefuseUnknown); err != nil {
		t.Fatalf("%d levels: %v", MaxDepth, err)
	}
	if err := Decode(nested(MaxDepth+1), &v, RefuseUnknown); !errors.Is(err, ErrTooDeep) {
		t.Fatalf("%d levels: %v; want ErrTooDeep", MaxDepth+1, err)
	}
	deep := []byte(`{"tags":` + strings.Repeat("[", 1<<20))
	allocated := testing.AllocsPerRun(1, func() {
		if err := Decode(deep, &v, IgnoreUnknown); !errors.Is(err, ErrTooDeep) {
			t.Fatalf("a megabyte of brackets: %v; want ErrTooDeep", err)
		}
	})
	if allocated > 1000 {
		t.Fatalf("refusing a megabyte of brackets took %.0f allocations", allocated)
	}
}
