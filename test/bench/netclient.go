package main

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
)

// The Neutron v2.0 calls of the network benchmark. A netClient is a client
// whose base is nimbo's network endpoint ("http://127.0.0.1:5000/networking/v2.0").
type netClient struct{ *client }

// portInfo is what the benchmark needs from a port.
type portInfo struct {
	ID       string `json:"id"`
	Status   string `json:"status"`
	MAC      string `json:"mac_address"`
	FixedIPs []struct {
		IP       string `json:"ip_address"`
		SubnetID string `json:"subnet_id"`
	} `json:"fixed_ips"`
}

// ip is the port's first address ("" if none).
func (p portInfo) ip() string {
	if len(p.FixedIPs) == 0 {
		return ""
	}
	return p.FixedIPs[0].IP
}

// decode unmarshals a response body, naming the request on failure.
func decode(method, url string, b []byte, v any) error {
	if err := json.Unmarshal(b, v); err != nil {
		return fmt.Errorf("%s %s: decoding the response: %w: %.300s", method, url, err, b)
	}
	return nil
}

// createNetwork creates a network and returns its ID.
func (c netClient) createNetwork(ctx context.Context, token, name string) (string, error) {
	_, b, err := c.do(ctx, http.MethodPost, "/networks", map[string]any{"network": map[string]any{"name": name}}, token, "", http.StatusCreated)
	if err != nil {
		return "", err
	}
	var r struct {
		Network struct{ ID string } `json:"network"`
	}
	if err := decode("POST", c.base+"/networks", b, &r); err != nil {
		return "", err
	}
	return r.Network.ID, nil
}

// createSubnet creates an IPv4 subnet (DHCP on, Neutron's default) and
// returns its ID.
func (c netClient) createSubnet(ctx context.Context, token, networkID, name, cidr string) (string, error) {
	_, b, err := c.do(ctx, http.MethodPost, "/subnets", map[string]any{"subnet": map[string]any{
		"network_id": networkID, "name": name, "ip_version": 4, "cidr": cidr}}, token, "", http.StatusCreated)
	if err != nil {
		return "", err
	}
	var r struct {
		Subnet struct{ ID string } `json:"subnet"`
	}
	if err := decode("POST", c.base+"/subnets", b, &r); err != nil {
		return "", err
	}
	return r.Subnet.ID, nil
}

// setQuota sets one of a project's quotas (-1: unlimited).
func (c netClient) setQuota(ctx context.Context, token, project, resource string, limit int) error {
	_, _, err := c.do(ctx, http.MethodPut, "/quotas/"+project, map[string]any{"quota": map[string]any{resource: limit}}, token, "", http.StatusOK)
	return err
}

// createPort creates one port from attrs and returns it.
func (c netClient) createPort(ctx context.Context, token string, attrs map[string]any) (portInfo, error) {
	_, b, err := c.do(ctx, http.MethodPost, "/ports", map[string]any{"port": attrs}, token, "", http.StatusCreated)
	if err != nil {
		return portInfo{}, err
	}
	var r struct {
		Port portInfo `json:"port"`
	}
	if err := decode("POST", c.base+"/ports", b, &r); err != nil {
		return portInfo{}, err
	}
	if r.Port.ID == "" {
		return portInfo{}, fmt.Errorf("POST %s/ports: 201 without a port id: %.300s", c.base, b)
	}
	return r.Port, nil
}

// createPorts creates ports in one bulk request ({"ports": [...]}) and
// checks that as many came back.
func (c netClient) createPorts(ctx context.Context, token string, attrs []map[string]any) error {
	_, b, err := c.do(ctx, http.MethodPost, "/ports", map[string]any{"ports": attrs}, token, "", http.StatusCreated)
	if err != nil {
		return err
	}
	var r struct {
		Ports []struct {
			ID string `json:"id"`
		} `json:"ports"`
	}
	if err := decode("POST", c.base+"/ports", b, &r); err != nil {
		return err
	}
	if len(r.Ports) != len(attrs) {
		return fmt.Errorf("POST %s/ports: bulk create of %d ports answered 201 with %d", c.base, len(attrs), len(r.Ports))
	}
	return nil
}

// portStatus reads a port's status (GET /v2.0/ports/{id}?fields=status).
func (c netClient) portStatus(ctx context.Context, token, id string) (string, error) {
	_, b, err := c.do(ctx, http.MethodGet, "/ports/"+id+"?fields=status", nil, token, "", http.StatusOK)
	if err != nil {
		return "", err
	}
	var r struct {
		Port struct{ Status string } `json:"port"`
	}
	if err := decode("GET", c.base+"/ports/"+id, b, &r); err != nil {
		return "", err
	}
	return r.Port.Status, nil
}

// listPorts lists ports with a query string ("limit=100") and returns them.
func (c netClient) listPorts(ctx context.Context, token string, query url.Values) ([]portInfo, error) {
	path := "/ports"
	if len(query) > 0 {
		path += "?" + query.Encode()
	}
	_, b, err := c.do(ctx, http.MethodGet, path, nil, token, "", http.StatusOK)
	if err != nil {
		return nil, err
	}
	var r struct {
		Ports []portInfo `json:"ports"`
	}
	if err := decode("GET", c.base+path, b, &r); err != nil {
		return nil, err
	}
	return r.Ports, nil
}

// deletePort deletes a port (204 expected).
func (c netClient) deletePort(ctx context.Context, token, id string) error {
	_, _, err := c.do(ctx, http.MethodDelete, "/ports/"+id, nil, token, "", http.StatusNoContent)
	return err
}
