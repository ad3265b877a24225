package caddymodule

import (
	"time"

	"github.com/gatehouse-auth/gatehouse/adminapi"
	"github.com/gatehouse-auth/gatehouse/engine"
	"github.com/gatehouse-auth/gatehouse/plugin/appkey"
)

func init() {
	extensions = append(extensions, func(e *engine.Engine, a *App) (adminapi.Provider, error) {
		svc := appkey.NewService(e, appkey.Options{PurgeInterval: time.Duration(a.AppKeyPurgeInterval)})
		e.Register(appkey.NewCredential(svc))
		return svc, nil
	})
}
