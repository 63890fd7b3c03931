// CoreDNS for the kind node image of hack/kind.sh (the image registry.k8s.io/coredns/coredns
// cannot be pulled here), with the plugins that the Corefile kubeadm writes uses: errors, health,
// ready, kubernetes, prometheus, forward, cache, loop, reload, loadbalance (and log). Building
// github.com/coredns/coredns itself would compile every plugin and its cloud SDKs.
package main

import (
	"github.com/coredns/coredns/coremain"

	_ "github.com/coredns/coredns/plugin/cache"
	_ "github.com/coredns/coredns/plugin/errors"
	_ "github.com/coredns/coredns/plugin/forward"
	_ "github.com/coredns/coredns/plugin/health"
	_ "github.com/coredns/coredns/plugin/kubernetes"
	_ "github.com/coredns/coredns/plugin/loadbalance"
	_ "github.com/coredns/coredns/plugin/log"
	_ "github.com/coredns/coredns/plugin/loop"
	_ "github.com/coredns/coredns/plugin/metrics"
	_ "github.com/coredns/coredns/plugin/ready"
	_ "github.com/coredns/coredns/plugin/reload"
)

func main() {
	coremain.Run()
}
