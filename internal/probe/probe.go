// Package probe implements nimbo's probes, as neutron-debug's probe-create
// had: a port on a network wired into a network namespace on this host, so a
// person (or a test) can check connectivity from inside the network by hand.
// The commands talk to the cloud like the openstack CLI does (OS_* variables
// of an openrc); the agent on this host wires the port when it sees it bound
// here with device_owner network:probe.
package probe

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"time"

	"github.com/gophercloud/gophercloud/v2"
	"github.com/gophercloud/gophercloud/v2/openstack"
	"github.com/gophercloud/gophercloud/v2/openstack/networking/v2/extensions/portsbinding"
	"github.com/gophercloud/gophercloud/v2/openstack/networking/v2/networks"
	"github.com/gophercloud/gophercloud/v2/openstack/networking/v2/ports"
	"github.com/gophercloud/gophercloud/v2/openstack/networking/v2/subnets"
	"github.com/insomniacslk/dhcp/dhcpv4/nclient4"

	"github.com/nimbo-cloud/nimbo/internal/agent"
	"github.com/nimbo-cloud/nimbo/internal/hostnet"
	"github.com/nimbo-cloud/nimbo/internal/network"
)

// Options are what every probe command needs.
type Options struct {
	// Host is this host's ID (the agent's --host); NetnsPrefix its --netns-prefix.
	Host, NetnsPrefix string
}

// Client connects to the network service with the OS_* environment, read
// the way openstackclient reads it (gophercloud's AuthOptionsFromEnv ignores
// OS_USER_DOMAIN_NAME and OS_PROJECT_DOMAIN_NAME, which openrc files use).
func Client(ctx context.Context) (*gophercloud.ServiceClient, error) {
	ao, err := authOptionsFromEnv(os.Getenv)
	if err != nil {
		return nil, err
	}
	pc, err := openstack.AuthenticatedClient(ctx, ao)
	if err != nil {
		return nil, fmt.Errorf("authenticating to %s: %w", ao.IdentityEndpoint, err)
	}
	return openstack.NewNetworkV2(pc, gophercloud.EndpointOpts{Region: os.Getenv("OS_REGION_NAME")})
}

// authOptionsFromEnv reads OS_* variables into gophercloud's options.
func authOptionsFromEnv(env func(string) string) (gophercloud.AuthOptions, error) {
	first := func(keys ...string) string {
		for _, k := range keys {
			if v := env(k); v != "" {
				return v
			}
		}
		return ""
	}
	ao := gophercloud.AuthOptions{
		IdentityEndpoint:            env("OS_AUTH_URL"),
		Username:                    env("OS_USERNAME"),
		UserID:                      env("OS_USER_ID"),
		Password:                    env("OS_PASSWORD"),
		DomainName:                  first("OS_USER_DOMAIN_NAME", "OS_DOMAIN_NAME"),
		DomainID:                    first("OS_USER_DOMAIN_ID", "OS_DOMAIN_ID"),
		ApplicationCredentialID:     env("OS_APPLICATION_CREDENTIAL_ID"),
		ApplicationCredentialName:   env("OS_APPLICATION_CREDENTIAL_NAME"),
		ApplicationCredentialSecret: env("OS_APPLICATION_CREDENTIAL_SECRET"),
		AllowReauth:                 true,
	}
	if ao.IdentityEndpoint == "" {
		return ao, fmt.Errorf("credentials: OS_AUTH_URL is not set (source an openrc first)")
	}
	if ao.ApplicationCredentialID == "" && ao.ApplicationCredentialName == "" {
		if ao.Username == "" && ao.UserID == "" {
			return ao, fmt.Errorf("credentials: OS_USERNAME is not set (source an openrc first)")
		}
		if ao.Password == "" {
			return ao, fmt.Errorf("credentials: OS_PASSWORD is not set")
		}
		project, projectID := first("OS_PROJECT_NAME", "OS_TENANT_NAME"), first("OS_PROJECT_ID", "OS_TENANT_ID")
		if project != "" || projectID != "" {
			ao.Scope = &gophercloud.AuthScope{ProjectName: project, ProjectID: projectID,
				DomainName: first("OS_PROJECT_DOMAIN_NAME", "OS_DOMAIN_NAME"), DomainID: first("OS_PROJECT_DOMAIN_ID", "OS_DOMAIN_ID")}
			if projectID != "" {
				ao.Scope.ProjectName, ao.Scope.DomainName, ao.Scope.DomainID = "", "", ""
			}
		}
	}
	return ao, nil
}

// Probe is a probe port and where it lives.
type Probe struct {
	Port  ports.Port
	Host  string
	Netns string
	// Lease is the address DHCP gave the probe ("" when not asked).
	Lease string
}

type portWithBinding struct {
	ports.Port
	portsbinding.PortsBindingExt
}

// CreateOptions are the knobs of a new probe.
type CreateOptions struct {
	Network        string // name or ID
	Name           string
	FixedIP        string   // optional address to ask for
	SecurityGroups []string // IDs; nil for the project's default
	Timeout        time.Duration
}

// Create makes a probe port bound to this host, waits for the agent to wire
// it, then asks DHCP for its address (when its subnet has DHCP) and checks
// the answer is the port's address.
func Create(ctx context.Context, c *gophercloud.ServiceClient, o Options, co CreateOptions) (Probe, error) {
	if co.Timeout <= 0 {
		co.Timeout = 30 * time.Second
	}
	netID, err := findNetwork(ctx, c, co.Network)
	if err != nil {
		return Probe{}, err
	}
	po := ports.CreateOpts{NetworkID: netID, Name: co.Name, DeviceOwner: network.OwnerProbe, DeviceID: "probe-" + o.Host}
	if co.FixedIP != "" {
		po.FixedIPs = []ports.IP{{IPAddress: co.FixedIP}}
	}
	if co.SecurityGroups != nil {
		po.SecurityGroups = &co.SecurityGroups
	}
	var created portWithBinding
	err = ports.Create(ctx, c, portsbinding.CreateOptsExt{CreateOptsBuilder: po, HostID: o.Host}).ExtractInto(&created)
	if err != nil {
		if gophercloud.ResponseCodeIs(err, 403) {
			return Probe{}, fmt.Errorf("creating the probe port: %w (binding a port to a host needs admin credentials, as neutron-debug did)", err)
		}
		return Probe{}, fmt.Errorf("creating the probe port: %w", err)
	}
	p := Probe{Port: created.Port, Host: o.Host, Netns: agent.ProbeNetns(o.NetnsPrefix, created.ID)}
	deadline := time.Now().Add(co.Timeout)
	for p.Port.Status != network.StatusActive {
		if time.Now().After(deadline) {
			_ = ports.Delete(context.WithoutCancel(ctx), c, p.Port.ID).ExtractErr()
			return Probe{}, fmt.Errorf("the agent on host %s did not wire probe %s within %s (is `nimbo up --host %s` running here?)", o.Host, p.Port.ID, co.Timeout, o.Host)
		}
		select {
		case <-ctx.Done():
			return Probe{}, ctx.Err()
		case <-time.After(50 * time.Millisecond):
		}
		got, err := ports.Get(ctx, c, p.Port.ID).Extract()
		if err != nil {
			return Probe{}, err
		}
		p.Port = *got
	}
	if len(p.Port.FixedIPs) > 0 {
		sn, err := subnets.Get(ctx, c, p.Port.FixedIPs[0].SubnetID).Extract()
		if err != nil {
			return p, err
		}
		if !sn.EnableDHCP {
			return p, nil // the agent configured the address itself
		}
		lease, err := DHCPLease(ctx, p.Netns)
		if err != nil {
			return p, fmt.Errorf("probe %s is wired but DHCP failed: %w", p.Port.ID, err)
		}
		p.Lease = lease.String()
		if p.Lease != p.Port.FixedIPs[0].IPAddress {
			return p, fmt.Errorf("DHCP offered %s but the port's address is %s", p.Lease, p.Port.FixedIPs[0].IPAddress)
		}
	}
	return p, nil
}

// DHCPLease runs a DHCP exchange (discover, offer, request, ack) from the
// probe interface in namespace netns, which sends from the port's MAC, and
// returns the address DHCP gave.
func DHCPLease(ctx context.Context, netns string) (netip.Addr, error) {
	ns, err := hostnet.OpenNetns(netns)
	if err != nil {
		return netip.Addr{}, err
	}
	defer ns.Close()
	var cl *nclient4.Client
	if err := ns.Do(func() error {
		var err error
		cl, err = nclient4.New(agent.ProbeIface, nclient4.WithTimeout(2*time.Second), nclient4.WithRetry(2))
		return err
	}); err != nil {
		return netip.Addr{}, fmt.Errorf("DHCP client: %w", err)
	}
	defer cl.Close()
	lctx, cancel := context.WithTimeout(ctx, 6*time.Second)
	defer cancel()
	lease, err := cl.Request(lctx)
	if err != nil {
		return netip.Addr{}, fmt.Errorf("no DHCP answer: %w", err)
	}
	a, ok := netip.AddrFromSlice(lease.ACK.YourIPAddr.To4())
	if !ok {
		return netip.Addr{}, fmt.Errorf("DHCP answered without an address")
	}
	return a, nil
}

func findNetwork(ctx context.Context, c *gophercloud.ServiceClient, nameOrID string) (string, error) {
	if n, err := networks.Get(ctx, c, nameOrID).Extract(); err == nil {
		return n.ID, nil
	}
	pages, err := networks.List(c, networks.ListOpts{Name: nameOrID}).AllPages(ctx)
	if err != nil {
		return "", err
	}
	all, err := networks.ExtractNetworks(pages)
	if err != nil {
		return "", err
	}
	switch len(all) {
	case 0:
		return "", fmt.Errorf("no network named or with ID %q", nameOrID)
	case 1:
		return all[0].ID, nil
	}
	return "", fmt.Errorf("more than one network is named %q: give its ID", nameOrID)
}

// List lists the probes (on every host).
func List(ctx context.Context, c *gophercloud.ServiceClient, o Options) ([]Probe, error) {
	pages, err := ports.List(c, ports.ListOpts{DeviceOwner: network.OwnerProbe}).AllPages(ctx)
	if err != nil {
		return nil, err
	}
	var all []portWithBinding
	if err := ports.ExtractPortsInto(pages, &all); err != nil {
		return nil, err
	}
	var out []Probe
	for _, p := range all {
		out = append(out, Probe{Port: p.Port, Host: p.HostID, Netns: agent.ProbeNetns(o.NetnsPrefix, p.ID)})
	}
	return out, nil
}

// Find resolves a probe by port ID or name.
func Find(ctx context.Context, c *gophercloud.ServiceClient, o Options, nameOrID string) (Probe, error) {
	all, err := List(ctx, c, o)
	if err != nil {
		return Probe{}, err
	}
	var found []Probe
	for _, p := range all {
		if p.Port.ID == nameOrID || p.Port.Name == nameOrID {
			found = append(found, p)
		}
	}
	switch len(found) {
	case 0:
		return Probe{}, fmt.Errorf("no probe named or with ID %q", nameOrID)
	case 1:
		return found[0], nil
	}
	return Probe{}, fmt.Errorf("more than one probe is named %q: give its ID", nameOrID)
}

// Delete deletes a probe's port and waits (up to timeout) for the agent to
// remove its namespace when it lives on this host.
func Delete(ctx context.Context, c *gophercloud.ServiceClient, p Probe, local bool, timeout time.Duration) error {
	if err := ports.Delete(ctx, c, p.Port.ID).ExtractErr(); err != nil {
		return err
	}
	if !local {
		return nil
	}
	deadline := time.Now().Add(timeout)
	for {
		if _, err := os.Stat(hostnet.NetnsPath(p.Netns)); errors.Is(err, os.ErrNotExist) {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("the port is deleted but namespace %s is still there after %s (is the agent running?)", p.Netns, timeout)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// Exec runs a command inside a probe's namespace with the caller's stdio and
// returns its exit status.
func Exec(ctx context.Context, p Probe, argv []string) (int, error) {
	if len(argv) == 0 {
		return 2, fmt.Errorf("no command given")
	}
	cmd := exec.CommandContext(ctx, "ip", append([]string{"netns", "exec", p.Netns}, argv...)...)
	cmd.Stdin, cmd.Stdout, cmd.Stderr = os.Stdin, os.Stdout, os.Stderr
	err := cmd.Run()
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		return ee.ExitCode(), nil
	}
	if err != nil {
		return 1, err
	}
	return 0, nil
}
