package main

import (
	"os"

	"k8s.io/component-base/cli"
	"k8s.io/component-base/logs"
	"k8s.io/kubectl/pkg/cmd"
	"k8s.io/kubectl/pkg/cmd/util"

	// Client auth plugins, as the upstream kubectl main imports them.
	_ "k8s.io/client-go/plugin/pkg/client/auth"
)

// runKubectl is the upstream kubectl main (k8s.io/kubernetes/cmd/kubectl) of
// the pinned release; os.Args has already been shaped as kubectl's.
func runKubectl() int {
	// Verbosity must be known while the command is built (plugins, .kuberc),
	// before cobra parses the flags: the upstream main does the same.
	logs.GlogSetter(cmd.GetLogVerbosity(os.Args)) //nolint:errcheck
	command := cmd.NewDefaultKubectlCommand()
	if err := cli.RunNoErrOutput(command); err != nil {
		util.CheckErr(err) // prints the error the kubectl way and exits non-zero
	}
	return 0
}
