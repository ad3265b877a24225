package main

import (
	"fmt"
	"math/rand/v2"
	"strings"
)

// packed holds many credentials of one length back to back in a single
// string. Scale mode draws from a million of them; as a million strings
// they would be a million objects for the load generator's garbage
// collector to mark on every cycle, CPU taken from the cores Caddy runs on.
type packed struct {
	text string
	size int
}

// pack joins values, which must all have the same length.
func pack(values []string) (packed, error) {
	if len(values) == 0 {
		return packed{}, nil
	}
	size := len(values[0])
	for _, v := range values {
		if size == 0 || len(v) != size {
			return packed{}, fmt.Errorf("the %d values are not all %d characters long", len(values), size)
		}
	}
	return packed{text: strings.Join(values, ""), size: size}, nil
}

// len is the number of values.
func (p packed) len() int {
	if p.size == 0 {
		return 0
	}
	return len(p.text) / p.size
}

// random returns one of the values, drawn uniformly.
func (p packed) random() string { return p.at(rand.IntN(p.len())) }

// at returns the i-th value.
func (p packed) at(i int) string { return p.text[i*p.size : (i+1)*p.size] }
