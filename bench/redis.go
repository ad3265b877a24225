package main

import (
	"context"
	"fmt"
	"log"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"time"

	goredis "github.com/redis/go-redis/v9"
)

// appKeyRedisKind is the app_key_redis row: the cache-hot app_key row (one
// key in every request, also in scale mode) served by a second Caddy whose
// gatehouse app stores its state in a private redis-server (durable:
// appendfsync always) instead of Badger. The main Caddy has no site for
// it; the second one runs this route and its baseline, plain_second_caddy
// (plain reverse_proxy in the same second process), both in front of the
// main Caddy's upstream, so that the extra process on the path is in the
// baseline too.
var appKeyRedisKind = kind{
	name:     "app_key_redis",
	baseline: secondPlain,
	prepare:  startRedis,
	setup:    setupAppKeyRedis,
}

// secondPlain is the baseline route of the second Caddy.
const secondPlain = "plain_second_caddy"

// redisURL is the URL of the private redis-server startRedis runs.
func redisURL(e *env) string { return fmt.Sprintf("redis://127.0.0.1:%d/0", e.ports["redis"]) }

// redisClient is a client of the private redis-server.
func redisClient(e *env) *goredis.Client { return nodeClient(loopback(e.ports["redis"])) }

// nodeClient is a client of the one redis-server at addr (host:port).
func nodeClient(addr string) *goredis.Client { return goredis.NewClient(&goredis.Options{Addr: addr}) }

// loopback is the address of the loopback port.
func loopback(port int) string { return "127.0.0.1:" + strconv.Itoa(port) }

// startRedis runs the app_key_redis row's private redis-server.
func startRedis(e *env) error {
	e.ports["redis"] = freePort()
	return startRedisServer(e, "redis")
}

// startRedisServer runs a redis-server on the loopback port e.ports[name]
// with its files under e.dir/name, persistence as in production
// (append-only file, fsync on every write, no RDB snapshots) and the
// further args, and waits until it answers PING.
func startRedisServer(e *env, name string, args ...string) error {
	bin, err := exec.LookPath("redis-server")
	if err != nil {
		return fmt.Errorf("redis-server is not installed (`make tools` installs it; or leave this row out, e.g. -kinds basic,app_key,connector_token,session): %v", err)
	}
	dir := filepath.Join(e.dir, name)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return err
	}
	port := e.ports[name]
	logFile := filepath.Join(dir, "redis.log")
	var backendCPUs []int
	if e.pins != nil {
		backendCPUs = e.pins.backend
	}
	cmd, err := e.command(backendCPUs, append([]string{bin, "--port", strconv.Itoa(port), "--bind", "127.0.0.1", "--dir", dir,
		"--appendonly", "yes", "--appendfsync", "always", "--save", "", "--logfile", logFile}, args...)...)
	if err != nil {
		return err
	}
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("starting %s: %v", bin, err)
	}
	exited, _ := e.own(cmd)
	client := nodeClient(loopback(port))
	defer client.Close()
	for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		err = client.Ping(ctx).Err()
		cancel()
		if err == nil {
			return nil
		}
		select {
		case <-exited:
			raw, _ := os.ReadFile(logFile)
			return fmt.Errorf("redis-server exited during start-up:\n%s", raw)
		case <-time.After(20 * time.Millisecond):
		}
	}
	return fmt.Errorf("redis-server did not answer PING within 10 s: %v", err)
}

// setupAppKeyRedis starts the second Caddy (own admin port and data_dir,
// storage = the private Redis), seeds the bench role, user and app key
// through its admin API and checks that they landed in Redis.
func setupAppKeyRedis(e *env) (row, error) {
	dir := filepath.Join(e.dir, "caddy-redis")
	adminPort := freePort()
	e.ports[secondPlain] = freePort()
	config, err := e.caddyfile(adminPort, filepath.Join(dir, "data"), "\t\tstorage "+redisURL(e)+"\n",
		[]string{gatehouseSite("app_key_redis", "app_key", ""), plainSite(secondPlain)})
	if err != nil {
		return row{}, err
	}
	c, err := e.startCaddy(dir, adminPort, config, e.caddyCPUs())
	if err != nil {
		return row{}, err
	}
	key, err := seedAppKey(c)
	if err != nil {
		return row{}, err
	}
	client := redisClient(e)
	defer client.Close()
	n, err := client.DBSize(context.Background()).Result()
	if err != nil {
		return row{}, fmt.Errorf("counting the keys in Redis: %v", err)
	}
	if n == 0 {
		return row{}, fmt.Errorf("the second Caddy seeded the app key but Redis holds no keys: its storage is not Redis")
	}
	log.Printf("app_key_redis: second Caddy up in %.2f s, storage %s (%d Redis keys after seeding)", c.startup.Seconds(), redisURL(e), n)
	plain := e.get("http://127.0.0.1:%d/", secondPlain, nil, nil)
	plain.caddy = c
	e.targets[secondPlain] = plain
	r := appKeyRow("app_key_redis", e, key)
	r.baseline, r.target.caddy = secondPlain, c
	return r, nil
}
