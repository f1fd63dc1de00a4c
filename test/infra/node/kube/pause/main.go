// Command pause is the sandbox ("pause") container of the test node: the process that holds a
// Pod's namespaces while its containers come and go. The upstream image
// (registry.k8s.io/pause) cannot be pulled here, so scripts/build-node.sh builds this one into a
// local image. Like the upstream pause.c: as PID 1 it reaps orphaned children, and it exits on
// SIGINT or SIGTERM (PID 1 has no default signal handlers, so it must say so itself).
package main

import (
	"os"
	"os/signal"
	"syscall"
)

func main() {
	signals := make(chan os.Signal, 8)
	signal.Notify(signals, syscall.SIGINT, syscall.SIGTERM, syscall.SIGCHLD)
	for s := range signals {
		if s != syscall.SIGCHLD {
			os.Exit(0)
		}
		for {
			var status syscall.WaitStatus
			pid, err := syscall.Wait4(-1, &status, syscall.WNOHANG, nil)
			if pid <= 0 || err != nil {
				break
			}
		}
	}
}
