package listquery

import (
	"fmt"
	"net/url"
	"testing"
)

// benchItems renders n ports the way a handler would.
func benchItems(b *testing.B, n int) []map[string]any {
	ports := make([]port, n)
	for i := range ports {
		ports[i] = port{
			ID:             fmt.Sprintf("%08x-0000-4000-8000-%012x", (i*7919)%n, i),
			Name:           sp(fmt.Sprintf("port-%d", i%97)),
			NetworkID:      fmt.Sprintf("net-%d", i%10),
			DeviceID:       fmt.Sprintf("dev-%d", i%500),
			AdminStateUp:   i%3 != 0,
			MTU:            1450 + i%2*50,
			SecurityGroups: []string{"sg-default", fmt.Sprintf("sg-%d", i%7)},
			Tags:           []string{"t1", fmt.Sprintf("t%d", i%5)},
			FixedIPs:       []fip{{SubnetID: fmt.Sprintf("sub-%d", i%10), IPAddress: fmt.Sprintf("10.%d.%d.%d", i%10, i/256%256, i%256)}},
		}
	}
	return render(b, ports)
}

func BenchmarkApply(b *testing.B) {
	items := benchItems(b, 10000)
	for _, raw := range []string{
		"", // default order by id, no page
		"limit=100",
		"limit=100&marker=" + items[1234]["id"].(string) + "&sort_key=name&sort_dir=desc&sort_key=mtu&sort_dir=asc",
		"network_id=net-3&admin_state_up=true&tags-any=t2,t3&fields=id&fields=name",
		"fixed_ips=subnet_id%3Dsub-1&fixed_ips=ip_address_substr%3D10.1.&limit=50&page_reverse=True",
	} {
		q, err := Parse(mustQuery(b, raw), portSpec)
		if err != nil {
			b.Fatal(err)
		}
		base, _ := url.Parse("http://nimbo:9696/v2.0/ports")
		b.Run(fmt.Sprintf("10k/%q", raw), func(b *testing.B) {
			for b.Loop() {
				if _, _, err := Apply(items, q, base); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
