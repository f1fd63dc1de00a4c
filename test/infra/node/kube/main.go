// Command ipsec-node is the node side of the test cluster of ipsec-operator: one multi-call
// binary (the Kubernetes packages are compiled and linked once) that runs, by its first argument,
//
//	ipsec-node kubelet ARGS...                  the kubelet
//	ipsec-node kube-controller-manager ARGS...  the controller manager
//	ipsec-node kube-scheduler ARGS...           the scheduler
//
// each exactly as the upstream main of the pinned release (k8s.io/kubernetes/cmd/...) runs it.
// It is test infrastructure: scripts/build-node.sh builds it and test/infra/node/ runs it.
package main

import (
	"context"
	"fmt"
	"os"
	"path/filepath"

	"github.com/spf13/cobra"
	"k8s.io/component-base/cli"
	controllermanager "k8s.io/kubernetes/cmd/kube-controller-manager/app"
	scheduler "k8s.io/kubernetes/cmd/kube-scheduler/app"
	kubelet "k8s.io/kubernetes/cmd/kubelet/app"

	// The blank imports of the upstream mains.
	_ "k8s.io/component-base/logs/json/register"
	_ "k8s.io/component-base/metrics/prometheus/clientgo"
	_ "k8s.io/component-base/metrics/prometheus/version"
)

func main() {
	name := filepath.Base(os.Args[0])
	if name == "ipsec-node" {
		if len(os.Args) < 2 {
			usage()
			os.Exit(2)
		}
		// cobra and the components' flag parsing read os.Args: shape it as the component's own.
		name = os.Args[1]
		os.Args = append([]string{name}, os.Args[2:]...)
	}
	var command *cobra.Command
	switch name {
	case "kubelet":
		command = kubelet.NewKubeletCommand(context.Background())
	case "kube-controller-manager":
		command = controllermanager.NewControllerManagerCommand()
	case "kube-scheduler":
		command = scheduler.NewSchedulerCommand()
	default:
		usage()
		os.Exit(2)
	}
	os.Exit(cli.Run(command))
}

func usage() {
	fmt.Fprintln(os.Stderr, "usage: ipsec-node kubelet|kube-controller-manager|kube-scheduler ARGS...")
}
