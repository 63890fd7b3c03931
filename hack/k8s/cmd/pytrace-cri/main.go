// Command pytrace-cri is the small CRI client hack/cluster.sh uses on its own containerd:
//
//	pytrace-cri -endpoint unix:///run/pytrace-cluster/containerd/containerd.sock version
//	pytrace-cri -endpoint ... reset
//
// "version" succeeds once the runtime's CRI service answers. "reset" stops and removes every pod
// sandbox (and so every container) through the CRI, the way the kubelet would: the runtime then
// tears down the pod networks (CNI DEL), unmounts the rootfs and shm mounts and ends the shims.
// Stopping containerd without this would leave network namespaces, veths and mounts behind.
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
)

func main() {
	endpoint := flag.String("endpoint", "unix:///run/pytrace-cluster/containerd/containerd.sock", "CRI endpoint")
	timeout := flag.Duration("timeout", 2*time.Minute, "overall deadline")
	flag.Usage = func() {
		fmt.Fprintln(os.Stderr, "usage: pytrace-cri [-endpoint unix:///path] [-timeout 2m] version|reset")
	}
	flag.Parse()
	if flag.NArg() != 1 {
		flag.Usage()
		os.Exit(2)
	}
	conn, err := grpc.NewClient(*endpoint, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		fail("connect %s: %v", *endpoint, err)
	}
	defer conn.Close()
	rt := runtimeapi.NewRuntimeServiceClient(conn)
	ctx, cancel := context.WithTimeout(context.Background(), *timeout)
	defer cancel()

	switch flag.Arg(0) {
	case "version":
		v, err := rt.Version(ctx, &runtimeapi.VersionRequest{})
		if err != nil {
			fail("CRI Version: %v", err)
		}
		fmt.Printf("%s %s (CRI %s)\n", v.RuntimeName, v.RuntimeVersion, v.RuntimeApiVersion)
	case "reset":
		if err := reset(ctx, rt); err != nil {
			fail("%v", err)
		}
	default:
		flag.Usage()
		os.Exit(2)
	}
}

func reset(ctx context.Context, rt runtimeapi.RuntimeServiceClient) error {
	pods, err := rt.ListPodSandbox(ctx, &runtimeapi.ListPodSandboxRequest{})
	if err != nil {
		return fmt.Errorf("list pod sandboxes: %w", err)
	}
	var failed int
	for _, p := range pods.Items {
		name := p.Metadata.Namespace + "/" + p.Metadata.Name
		if _, err := rt.StopPodSandbox(ctx, &runtimeapi.StopPodSandboxRequest{PodSandboxId: p.Id}); err != nil {
			fmt.Fprintf(os.Stderr, "pytrace-cri: stop pod %s: %v\n", name, err)
			failed++
			continue
		}
		if _, err := rt.RemovePodSandbox(ctx, &runtimeapi.RemovePodSandboxRequest{PodSandboxId: p.Id}); err != nil {
			fmt.Fprintf(os.Stderr, "pytrace-cri: remove pod %s: %v\n", name, err)
			failed++
			continue
		}
		fmt.Printf("removed pod %s\n", name)
	}
	// Containers whose sandbox is already gone (should not happen, but a crash can leave them).
	ctrs, err := rt.ListContainers(ctx, &runtimeapi.ListContainersRequest{})
	if err != nil {
		return fmt.Errorf("list containers: %w", err)
	}
	for _, c := range ctrs.Containers {
		_, _ = rt.StopContainer(ctx, &runtimeapi.StopContainerRequest{ContainerId: c.Id, Timeout: 0})
		if _, err := rt.RemoveContainer(ctx, &runtimeapi.RemoveContainerRequest{ContainerId: c.Id}); err != nil {
			fmt.Fprintf(os.Stderr, "pytrace-cri: remove container %s: %v\n", c.Id, err)
			failed++
		}
	}
	if failed > 0 {
		return fmt.Errorf("%d pod(s) or container(s) could not be removed", failed)
	}
	return nil
}

func fail(format string, args ...any) {
	fmt.Fprintf(os.Stderr, "pytrace-cri: "+format+"\n", args...)
	os.Exit(1)
}
