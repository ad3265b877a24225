package main

import (
	"context"
	"encoding/json"
	"fmt"
	"log"
	"net/http"
	"path/filepath"
	"time"

	"github.com/gatehouse-auth/gatehouse/account"
	"github.com/gatehouse-auth/gatehouse/keystore"
	"github.com/gatehouse-auth/gatehouse/plugin/appkey"
	"github.com/gatehouse-auth/gatehouse/storage/badger"
	"github.com/gatehouse-auth/gatehouse/storage/cache"
	"github.com/gatehouse-auth/gatehouse/storage/tagged"
)

// appKeyKind is the app_key row: the appKey header on a route that takes
// application keys. Normally one key (cache-hot); in scale mode, keys drawn
// at random from the seeded ones, so most lookups miss the cache.
var appKeyKind = kind{
	name:     "app_key",
	baseline: "plain",
	fullSet:  true,
	site:     gatehouseSite("app_key", "app_key", ""),
	prepare:  seedScaleAppKeys,
	setup:    setupAppKeys("app_key"),
}

// scaleKeys are the values seeded in scale mode.
var scaleKeys packed

// keysPerUser spreads scale-mode keys over users (1M keys: 10 000 users).
const keysPerUser = 100

// seedScaleAppKeys writes the scale-mode keys straight into the Badger
// directory before Caddy starts (appkey.Seed: batched, no admin API): one
// million keys through the admin API would take hours of synced writes.
func seedScaleAppKeys(e *env) error {
	if e.scale <= 0 {
		return nil
	}
	t0 := time.Now()
	c, ks, err := openSeedStore(filepath.Join(e.dir, "data"))
	if err != nil {
		return err
	}
	defer c.Close()
	ctx := context.Background()
	accounts := account.NewService(c, ks)
	if _, err := accounts.PutRole(ctx, account.Role{Name: "bench", Rules: []account.Rule{{Methods: []string{"GET"}, Paths: []string{"/*"}}}}); err != nil {
		return err
	}
	keys := make([]appkey.SeedKey, 0, e.scale)
	expires := time.Now().Add(30 * 24 * time.Hour)
	for u := 0; len(keys) < e.scale; u++ {
		user, err := accounts.CreateUser(ctx, account.NewUser{Username: fmt.Sprintf("keyuser-%d", u), Roles: []string{"bench"}})
		if err != nil {
			return err
		}
		for i := 0; i < keysPerUser && len(keys) < e.scale; i++ {
			keys = append(keys, appkey.SeedKey{Name: fmt.Sprintf("bench-%d", len(keys)), Username: user.Username,
				UserID: user.ID, ExpiresAt: expires})
		}
	}
	values, err := appkey.Seed(ctx, c, ks, keys)
	if err != nil {
		return err
	}
	if scaleKeys, err = pack(values); err != nil {
		return fmt.Errorf("seeded app keys: %v", err)
	}
	what := fmt.Sprintf("%d app keys for %d users", scaleKeys.len(), (len(keys)+keysPerUser-1)/keysPerUser)
	e.seeded = append(e.seeded, what)
	log.Printf("seeded %s in %s", what, time.Since(t0).Round(time.Millisecond))
	return nil
}

// setupAppKeys returns the row name: in scale mode, keys drawn at random
// from the seeded ones; else the one bench key (created once per run).
func setupAppKeys(name string) func(*env) (row, error) {
	return func(e *env) (row, error) {
		if scaleKeys.len() > 0 {
			return row{name: name, baseline: "plain", target: e.drawn("http://127.0.0.1:%d/", name, "Appkey", scaleKeys, nil), drawn: true}, nil
		}
		if e.benchKey == "" {
			key, err := seedAppKey(e)
			if err != nil {
				return row{}, err
			}
			e.benchKey = key
		}
		return appKeyRow(name, e, e.benchKey), nil
	}
}

// seedAppKey creates the bench role and user and one app key for them
// through a's admin API, and returns the key.
func seedAppKey(a adminAPI) (string, error) {
	if err := seedBenchUser(a); err != nil {
		return "", err
	}
	out, err := a.mustCall(http.StatusCreated, "POST", "/gatehouse/appkeys", map[string]any{"name": "bench", "username": "bench",
		"expires_at": time.Now().Add(24 * time.Hour).UTC().Format(time.RFC3339)})
	if err != nil {
		return "", fmt.Errorf("creating the bench app key: %v", err)
	}
	var created struct{ Key string }
	if err := json.Unmarshal(out, &created); err != nil {
		return "", err
	}
	if created.Key == "" {
		return "", fmt.Errorf("creating the bench app key: no key in %s", out)
	}
	return created.Key, nil
}

// appKeyRow is the cache-hot row name: key in every request to the port
// of the same name, compared with plain.
func appKeyRow(name string, e *env, key string) row {
	return row{name: name, baseline: "plain",
		target: e.get("http://127.0.0.1:%d/", name, http.Header{"Appkey": {key}}, nil)}
}

// openSeedStore opens the store in dataDir (Badger, with its keystore,
// created when missing) as Caddy would, tagged records and all, for
// writing seeds while Caddy is stopped. Closing the cache closes it.
func openSeedStore(dataDir string) (*cache.Cache, *keystore.Keystore, error) {
	st, err := badger.Open(filepath.Join(dataDir, "badger"), badger.Options{})
	if err != nil {
		return nil, nil, err
	}
	ks, err := keystore.Open(filepath.Join(dataDir, "keystore.key"), true)
	if err != nil {
		st.Close()
		return nil, nil, err
	}
	records, err := tagged.Open(context.Background(), st, ks, tagged.Options{})
	if err != nil {
		st.Close()
		return nil, nil, err
	}
	return cache.New(records, 1024), ks, nil
}
