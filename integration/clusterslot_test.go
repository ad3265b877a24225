package integration

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	goredis "github.com/redis/go-redis/v9"

	"github.com/gatehouse-auth/gatehouse/integration/harness"
	"github.com/gatehouse-auth/gatehouse/internal/redisinfo"
	"github.com/gatehouse-auth/gatehouse/storage/redis/redistest"
)

// slotUsers is how many users (each with an app key) the one-slot
// workload makes.
const slotUsers = 8

// slotUser is the name of the i-th user of the one-slot workload.
func slotUser(i int) string { return fmt.Sprintf("slot-user-%02d", i) }

// slotNodes are clients of each primary of the cluster, in the order of
// cluster.Nodes, closed when the test ends.
func slotNodes(t *testing.T, cluster *redistest.Cluster) []*goredis.Client {
	t.Helper()
	var clients []*goredis.Client
	for _, n := range cluster.Nodes {
		c := goredis.NewClient(&goredis.Options{Addr: n.Addr()})
		t.Cleanup(func() { c.Close() })
		clients = append(clients, c)
	}
	return clients
}

// checkOneSlot: after a mixed workload through both members (users, app
// keys, Basic, sessions, a connector token, refusals that are audited),
// every key Gatehouse wrote is on the primary of its one hash slot, the
// other primaries hold no key and ran no data command, and the data is
// complete: both members list every user and key, and each credential
// works on the member that did not make it. It returns the app keys made.
func checkOneSlot(t *testing.T, cluster *redistest.Cluster, a, b *harness.Instance) []string {
	ctx := context.Background()
	slot := slices.Index(cluster.Nodes, cluster.NodeFor(t, "{gatehouse}:"))
	nodes := slotNodes(t, cluster)
	for _, n := range nodes {
		if err := n.ConfigResetStat(ctx).Err(); err != nil {
			t.Fatal(err)
		}
	}

	members := []*harness.Instance{a, b}
	keys := make([]string, slotUsers)
	for i := range slotUsers {
		maker := members[i%2]
		maker.MustAdmin(t, 201, "POST", "/gatehouse/users", map[string]any{"username": slotUser(i), "roles": []string{"reader"}, "password": "tulip harbour " + slotUser(i)})
		keys[i] = createKey(t, maker, fmt.Sprintf(`{"name":"slot-key-%02d","username":%q}`, i, slotUser(i))).Key
	}
	for i := range slotUsers {
		maker, other := members[i%2], members[(i+1)%2]
		if res := harness.Curl(t, "-u", slotUser(i)+":tulip harbour "+slotUser(i), other.HTTPSURL()+"/api/items"); res.Status != 200 {
			t.Fatalf("Basic for %s on the other member: %d %s", slotUser(i), res.Status, res.Body)
		}
		res := harness.Curl(t, "-H", "appKey: "+keys[i], other.HTTPSURL()+"/api/items?x-gatehouse-session=true")
		cookie := strings.SplitN(strings.TrimPrefix(res.Headers.Get("Set-Cookie"), "__Host-gatehouse_session="), ";", 2)[0]
		if res.Status != 200 || cookie == "" {
			t.Fatalf("app key of %s on the other member: %d %q", slotUser(i), res.Status, res.Headers.Get("Set-Cookie"))
		}
		if res := harness.Curl(t, "-b", "__Host-gatehouse_session="+cookie, maker.HTTPSURL()+"/api/items"); res.Status != 200 {
			t.Fatalf("session of %s back on its key's member: %d %s", slotUser(i), res.Status, res.Body)
		}
		if res := harness.Curl(t, "-u", slotUser(i)+":wrong password", maker.HTTPSURL()+"/api/items"); res.Status != 401 {
			t.Fatalf("wrong password of %s: %d, want 401", slotUser(i), res.Status)
		}
	}
	c := newConnector(t, a, "slot-agent", slotUser(0))
	if res := callAPI(t, a, c, mustToken(t, b, c).AccessToken); res.Status != 200 {
		t.Fatalf("connector token from B used on A: %d %s", res.Status, res.Body)
	}
	// The refusals reach the store through the audit writer, after the
	// requests: wait for every one.
	for i := range slotUsers {
		waitFor(t, "the refusal of "+slotUser(i)+" in the audit log", time.Minute, func() string {
			if n := countWhere(auditRequests(t, a, slotUser(i)), "outcome", "denied"); n != 1 {
				return fmt.Sprintf("%d denied events", n)
			}
			return ""
		})
	}

	// Complete: both members list every user and key.
	for _, inst := range members {
		var users []struct{ Username string }
		var appKeys []struct{ Name string }
		inst.AdminJSON(t, "GET", "/gatehouse/users", nil, &users)
		inst.AdminJSON(t, "GET", "/gatehouse/appkeys", nil, &appKeys)
		for i := range slotUsers {
			if !slices.ContainsFunc(users, func(u struct{ Username string }) bool { return u.Username == slotUser(i) }) {
				t.Errorf("%s does not list user %s: %+v", inst.HTTPSURL(), slotUser(i), users)
			}
			name := fmt.Sprintf("slot-key-%02d", i)
			if !slices.ContainsFunc(appKeys, func(k struct{ Name string }) bool { return k.Name == name }) {
				t.Errorf("%s does not list app key %s: %+v", inst.HTTPSURL(), name, appKeys)
			}
		}
	}

	// One slot: every key on its primary, none elsewhere; the other
	// primaries ran no data command for all that.
	for i, n := range nodes {
		info, err := n.Info(ctx, "commandstats").Result() // before DBSIZE, a data command of the test's
		if err != nil {
			t.Fatal(err)
		}
		stats, err := redisinfo.ParseCommandStats(info)
		if err != nil {
			t.Fatal(err)
		}
		size, err := n.DBSize(ctx).Result()
		if err != nil {
			t.Fatal(err)
		}
		if i != slot {
			if size != 0 || stats.Data() != 0 {
				t.Errorf("primary %s, not the slot's: %d keys, %d data commands (commandstats %v); want none", cluster.Nodes[i].Addr(), size, stats.Data(), stats)
			}
			continue
		}
		stored, err := n.Keys(ctx, "*").Result()
		if err != nil {
			t.Fatal(err)
		}
		var outside []string
		for _, k := range stored {
			if !strings.HasPrefix(k, "{gatehouse}:") {
				outside = append(outside, k)
			}
		}
		// The workload wrote at least a user, an app key and a session
		// per user, and an audit event per refusal.
		if len(stored) < 4*slotUsers || len(outside) > 0 || stats.Data() == 0 {
			t.Errorf("the slot's primary %s: %d keys (outside the prefix: %q), %d data commands", cluster.Nodes[i].Addr(), len(stored), outside, stats.Data())
		}
		t.Logf("the slot's primary holds %d keys and ran %d data commands; the other primaries none", len(stored), stats.Data())
	}
	return keys
}

// checkSlotPrimaryLost: with the slot's primary down (no replica to take
// over), both members refuse with 503, data plane and admin API, though
// two primaries of the cluster still run; once it is back, both serve
// again, admin writes included, and the data is all there.
func checkSlotPrimaryLost(t *testing.T, cluster *redistest.Cluster, a, b *harness.Instance, keys []string) {
	primary := cluster.NodeFor(t, "{gatehouse}:")
	members := []*harness.Instance{a, b}
	primary.Kill()
	for _, inst := range members {
		within(t, "503 on "+inst.HTTPSURL()+" with the slot's primary down", func() string {
			res := harness.Curl(t, "-H", "appKey: "+keys[0], inst.HTTPSURL()+"/api/items")
			if res.Status != 503 || !strings.Contains(res.Body, `"error":"unavailable"`) {
				return fmt.Sprintf("%d %s", res.Status, res.Body)
			}
			if st, body := inst.Admin(t, "GET", "/gatehouse/users", nil); st != 503 {
				return fmt.Sprintf("admin API: %d %s", st, body)
			}
			return ""
		})
	}

	primary.Restart()
	for _, inst := range members {
		waitFor(t, inst.HTTPSURL()+" serving again after the slot's primary came back", time.Minute, func() string {
			for _, k := range keys {
				if res := harness.Curl(t, "-H", "appKey: "+k, inst.HTTPSURL()+"/api/items"); res.Status != 200 {
					return fmt.Sprintf("%d %s", res.Status, res.Body)
				}
			}
			return ""
		})
	}
	// Admin writes work again too: a block made through A is refused on B.
	waitFor(t, "an admin write through A after the slot's primary came back", time.Minute, func() string {
		if st, body := a.Admin(t, "PATCH", "/gatehouse/users/"+slotUser(1), `{"status":"blocked"}`); st != 200 {
			return fmt.Sprintf("%d %s", st, body)
		}
		return ""
	})
	within(t, "B refuses the app key of the user blocked on A", func() string {
		return status(harness.Curl(t, "-H", "appKey: "+keys[1], b.HTTPSURL()+"/api/items"), 403)
	})
	var users []struct{ Username string }
	b.AdminJSON(t, "GET", "/gatehouse/users", nil, &users)
	listed := slices.DeleteFunc(users, func(u struct{ Username string }) bool { return !strings.HasPrefix(u.Username, "slot-user-") })
	if len(listed) != slotUsers {
		t.Errorf("after the restart B lists %d of the %d users: %+v", len(listed), slotUsers, listed)
	}
}
