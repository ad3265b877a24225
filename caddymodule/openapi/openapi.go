// Package openapi holds the OpenAPI 3.1 documents of Gatehouse's two HTTP
// APIs: the admin API on Caddy's admin endpoint (Admin) and the
// ESA-compatible API of gatehouse_esa sites (ESA). The admin endpoint
// serves both, at /gatehouse/openapi.json and /gatehouse/openapi-esa.json;
// tests check that every admin route has an operation in Admin and
// validate the answers the integration tests receive against them.
package openapi

import _ "embed"

// Admin is the OpenAPI document of the admin API (JSON).
//
//go:embed admin.json
var Admin []byte

// ESA is the OpenAPI document of the ESA-compatible API (JSON).
//
//go:embed esa.json
var ESA []byte
