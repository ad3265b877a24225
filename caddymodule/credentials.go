package caddymodule

import (
	"github.com/gatehouse-auth/gatehouse/adminapi"
	"github.com/gatehouse-auth/gatehouse/engine"
	"github.com/gatehouse-auth/gatehouse/plugin/basic"
	"github.com/gatehouse-auth/gatehouse/plugin/sessioncookie"
)

func init() {
	extensions = append(extensions, func(e *engine.Engine, _ *App) (adminapi.Provider, error) {
		e.Register(basic.New(e))
		e.Register(sessioncookie.New(e))
		return nil, nil
	})
}
