// pytrace-kindnet is the pod network of the kind clusters that hack/kind.sh builds without a
// registry (kind's own kindnetd image cannot be fetched there, and its source is no Go module).
// It runs on every node as a DaemonSet in the node's network namespace and does two things:
//
//   - once the node has a podCIDR, it writes a CNI configuration (ptp pods with host-local
//     addresses from that range, and portmap) into /etc/cni/net.d, which makes the node Ready;
//   - it keeps one route per other node: that node's podCIDR via its InternalIP (the nodes share
//     one Docker network, so every node is one hop away), and removes the routes of nodes that left.
//
// Nodes are read from the API server every few seconds over HTTPS with the pod's service account
// token; the address is $CONTROL_PLANE_ENDPOINT (kind sets it: this pod starts before any Service
// routes) or else the in-cluster Service. Pods reach pods and Services of the cluster; traffic to
// addresses outside it is not masqueraded.
package main

import (
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"flag"
	"fmt"
	"log"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"time"

	"github.com/vishvananda/netlink"
)

const saDir = "/var/run/secrets/kubernetes.io/serviceaccount"

type nodeList struct {
	Items []struct {
		Metadata struct {
			Name string `json:"name"`
		} `json:"metadata"`
		Spec struct {
			PodCIDR string `json:"podCIDR"`
		} `json:"spec"`
		Status struct {
			Addresses []struct {
				Type    string `json:"type"`
				Address string `json:"address"`
			} `json:"addresses"`
		} `json:"status"`
	} `json:"items"`
}

type node struct {
	cidr *net.IPNet
	ip   net.IP
}

func apiBase() string {
	if ep := os.Getenv("CONTROL_PLANE_ENDPOINT"); ep != "" {
		return "https://" + ep
	}
	return "https://" + net.JoinHostPort(os.Getenv("KUBERNETES_SERVICE_HOST"), os.Getenv("KUBERNETES_SERVICE_PORT"))
}

func client() (*http.Client, error) {
	ca, err := os.ReadFile(filepath.Join(saDir, "ca.crt"))
	if err != nil {
		return nil, err
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(ca) {
		return nil, fmt.Errorf("no certificate in %s/ca.crt", saDir)
	}
	return &http.Client{Timeout: 10 * time.Second,
		Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}}}, nil
}

// nodes: name -> podCIDR and InternalIPv4, for the nodes that have both.
func nodes(c *http.Client, base string) (map[string]node, error) {
	token, err := os.ReadFile(filepath.Join(saDir, "token")) // re-read: the token is rotated
	if err != nil {
		return nil, err
	}
	req, err := http.NewRequest("GET", base+"/api/v1/nodes", nil)
	if err != nil {
		return nil, err
	}
	req.Header.Set("Authorization", "Bearer "+string(token))
	resp, err := c.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("GET /api/v1/nodes: %s", resp.Status)
	}
	var list nodeList
	if err := json.NewDecoder(resp.Body).Decode(&list); err != nil {
		return nil, err
	}
	out := map[string]node{}
	for _, n := range list.Items {
		_, cidr, err := net.ParseCIDR(n.Spec.PodCIDR)
		if err != nil || cidr.IP.To4() == nil {
			continue
		}
		for _, a := range n.Status.Addresses {
			if ip := net.ParseIP(a.Address); a.Type == "InternalIP" && ip != nil && ip.To4() != nil {
				out[n.Metadata.Name] = node{cidr, ip}
				break
			}
		}
	}
	return out, nil
}

func writeConfig(dir, cidr string) (bool, error) {
	conf := fmt.Sprintf(`{
  "cniVersion": "0.4.0",
  "name": "pytrace-kindnet",
  "plugins": [
    {
      "type": "ptp",
      "ipMasq": false,
      "mtu": 1500,
      "ipam": {"type": "host-local", "ranges": [[{"subnet": %q}]], "routes": [{"dst": "0.0.0.0/0"}]}
    },
    {"type": "portmap", "capabilities": {"portMappings": true}}
  ]
}
`, cidr)
	path := filepath.Join(dir, "10-pytrace-kindnet.conflist")
	if old, err := os.ReadFile(path); err == nil && string(old) == conf {
		return false, nil
	}
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, []byte(conf), 0o644); err != nil {
		return false, err
	}
	return true, os.Rename(tmp, path)
}

func main() {
	confDir := flag.String("cni-conf-dir", "/etc/cni/net.d", "where the CNI configuration is written")
	interval := flag.Duration("interval", 3*time.Second, "how often the nodes are read")
	flag.Parse()
	self := os.Getenv("NODE_NAME")
	if self == "" {
		log.Fatal("NODE_NAME is not set")
	}
	c, err := client()
	if err != nil {
		log.Fatal(err)
	}
	base := apiBase()
	routed := map[string]*netlink.Route{} // other node -> the route we keep for it
	for ; ; time.Sleep(*interval) {
		all, err := nodes(c, base)
		if err != nil {
			log.Printf("reading the nodes from %s: %v", base, err)
			continue
		}
		if me, ok := all[self]; ok {
			if changed, err := writeConfig(*confDir, me.cidr.String()); err != nil {
				log.Printf("writing the CNI configuration: %v", err)
			} else if changed {
				log.Printf("CNI configuration written: pods of %s in %s", self, me.cidr)
			}
		}
		for name, n := range all {
			if name == self {
				continue
			}
			r := &netlink.Route{Dst: n.cidr, Gw: n.ip}
			if old, ok := routed[name]; ok && old.Dst.String() == r.Dst.String() && old.Gw.Equal(r.Gw) {
				continue
			}
			if err := netlink.RouteReplace(r); err != nil {
				log.Printf("route %s via %s (node %s): %v", n.cidr, n.ip, name, err)
				continue
			}
			routed[name] = r
			log.Printf("route %s via %s (node %s)", n.cidr, n.ip, name)
		}
		for name, r := range routed {
			if _, ok := all[name]; !ok {
				if err := netlink.RouteDel(r); err != nil {
					log.Printf("removing the route of node %s: %v", name, err)
				}
				delete(routed, name)
			}
		}
	}
}
