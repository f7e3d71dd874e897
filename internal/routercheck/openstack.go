package routercheck

import (
	"context"
	"fmt"
	"net/netip"

	"github.com/gophercloud/gophercloud/v2"
	"github.com/gophercloud/gophercloud/v2/openstack/networking/v2/extensions/layer3/routers"
	"github.com/gophercloud/gophercloud/v2/openstack/networking/v2/networks"
	"github.com/gophercloud/gophercloud/v2/openstack/networking/v2/ports"
	"github.com/gophercloud/gophercloud/v2/openstack/networking/v2/subnets"

	"github.com/nimbo-cloud/nimbo/internal/network"
)

// OpenStack is the API of a Neutron endpoint (nimbo's or any other),
// through gophercloud; Client is a network v2 client (see probe.Client).
type OpenStack struct {
	Client *gophercloud.ServiceClient
}

// Router finds the router by ID, else by name, then reads what its
// gateway depends on: the external network's name, the gateway port (when
// visible: admin only), the external subnet. Only finding the router can
// fail; what cannot be read about the gateway is left out.
func (o OpenStack) Router(ctx context.Context, nameOrID string) (Router, error) {
	r, err := o.find(ctx, nameOrID)
	if err != nil {
		return Router{}, err
	}
	out := Router{ID: r.ID, Name: r.Name, Status: r.Status, AdminStateUp: r.AdminStateUp}
	gi := r.GatewayInfo
	if gi.NetworkID == "" {
		return out, nil
	}
	g := &Gateway{NetworkID: gi.NetworkID, EnableSNAT: gi.EnableSNAT == nil || *gi.EnableSNAT}
	out.Gateway = g
	for _, f := range gi.ExternalFixedIPs {
		if a, err := netip.ParseAddr(f.IPAddress); err == nil && a.Is4() {
			g.IP, g.SubnetID = a, f.SubnetID
			break
		}
	}
	if n, err := networks.Get(ctx, o.Client, gi.NetworkID).Extract(); err == nil {
		g.NetworkName = n.Name
	}
	pages, err := ports.List(o.Client, ports.ListOpts{DeviceID: r.ID, DeviceOwner: network.OwnerRouterGateway}).AllPages(ctx)
	if err == nil {
		if ps, err := ports.ExtractPorts(pages); err == nil {
			for _, p := range ps {
				if p.NetworkID == gi.NetworkID {
					g.PortID = p.ID
					break
				}
			}
		}
	}
	if g.SubnetID != "" {
		sn, err := subnets.Get(ctx, o.Client, g.SubnetID).Extract()
		if err != nil {
			g.SubnetError = err.Error()
			return out, nil
		}
		s := &Subnet{ID: sn.ID, Name: sn.Name}
		if s.CIDR, err = netip.ParsePrefix(sn.CIDR); err != nil {
			g.SubnetError = fmt.Sprintf("its cidr %q: %v", sn.CIDR, err)
			return out, nil
		}
		if sn.GatewayIP != "" {
			if s.GatewayIP, err = netip.ParseAddr(sn.GatewayIP); err != nil {
				g.SubnetError = fmt.Sprintf("its gateway_ip %q: %v", sn.GatewayIP, err)
				return out, nil
			}
		}
		g.Subnet = s
	}
	return out, nil
}

func (o OpenStack) find(ctx context.Context, nameOrID string) (*routers.Router, error) {
	if r, err := routers.Get(ctx, o.Client, nameOrID).Extract(); err == nil {
		return r, nil
	} else if !gophercloud.ResponseCodeIs(err, 404) && !gophercloud.ResponseCodeIs(err, 400) {
		return nil, fmt.Errorf("router %s: %w", nameOrID, err)
	}
	pages, err := routers.List(o.Client, routers.ListOpts{Name: nameOrID}).AllPages(ctx)
	if err != nil {
		return nil, fmt.Errorf("listing routers named %q: %w", nameOrID, err)
	}
	all, err := routers.ExtractRouters(pages)
	if err != nil {
		return nil, err
	}
	switch len(all) {
	case 0:
		return nil, fmt.Errorf("no router named or with ID %q", nameOrID)
	case 1:
		return &all[0], nil
	}
	return nil, fmt.Errorf("more than one router is named %q: give its ID", nameOrID)
}
