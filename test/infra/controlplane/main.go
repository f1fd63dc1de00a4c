// Command ipsec-controlplane is the test control plane of ipsec-operator: one
// multi-call binary (so the Kubernetes packages are compiled and linked once)
// that is either
//
//	ipsec-controlplane serve --data-dir DIR [--port N] [--kubeconfig FILE]
//	    a real kube-apiserver of the pinned release over an embedded etcd, or
//	kubectl ...  (invoked through a symlink named kubectl, or as
//	ipsec-controlplane kubectl ...)
//	    the kubectl of the same release.
//
// It is test infrastructure: scripts/build-controlplane.sh builds it and the
// TypeScript harness next to this file runs it.
package main

import (
	"fmt"
	"os"
	"path/filepath"
)

func main() {
	name := filepath.Base(os.Args[0])
	if name != "kubectl" {
		if len(os.Args) < 2 {
			usage()
			os.Exit(2)
		}
		// Re-shape os.Args as if the sub-command were the program: kubectl
		// and cobra read os.Args themselves.
		name = os.Args[1]
		os.Args = append([]string{name}, os.Args[2:]...)
	}
	switch name {
	case "kubectl":
		os.Exit(runKubectl())
	case "serve":
		os.Exit(runServe(os.Args[1:]))
	default:
		usage()
		os.Exit(2)
	}
}

func usage() {
	fmt.Fprintf(os.Stderr, "usage: %s serve --data-dir DIR [--port N] [--kubeconfig FILE] [--apiserver-arg=--flag=value ...]\n"+
		"       %s kubectl ARGS...   (or call it through a symlink named kubectl)\n",
		filepath.Base(os.Args[0]), filepath.Base(os.Args[0]))
}
