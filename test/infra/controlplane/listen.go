package main

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"os"
	"strconv"
	"strings"
	"syscall"
)

// listenSecure binds the apiserver's port on 127.0.0.1. With port 0 it picks a
// free port BELOW the kernel's ephemeral range: a restart on the same port
// (halt/resume in the harness) must find it free again, and a port inside
// the ephemeral range can meanwhile become the local port of any outgoing
// loopback connection, which would make the restart fail with EADDRINUSE.
func listenSecure(port int) (net.Listener, error) {
	if port != 0 {
		ln, err := net.Listen("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(port)))
		if err != nil {
			return nil, fmt.Errorf("listening on 127.0.0.1:%d: %w (another control plane still running?)", port, err)
		}
		return ln, nil
	}
	return listenStable()
}

// listenStable binds a free loopback port below the ephemeral range.
func listenStable() (net.Listener, error) {
	low := ephemeralLow()
	const floor = 10000 // clear of well-known and commonly configured ports
	if low <= floor+100 {
		return nil, fmt.Errorf("the ephemeral port range starts at %d: no room below it for a stable port; pass --port", low)
	}
	var lastErr error
	for attempt := 0; attempt < 50; attempt++ {
		p := floor + rand.IntN(low-floor)
		ln, err := net.Listen("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(p)))
		if err == nil {
			return ln, nil
		}
		if !errors.Is(err, syscall.EADDRINUSE) {
			return nil, err
		}
		lastErr = err
	}
	return nil, fmt.Errorf("no free port found below %d: %w", low, lastErr)
}

// freeStablePort finds a free port below the ephemeral range for a server
// that binds it itself (etcd). Another process may take it in between; the
// caller retries.
func freeStablePort() (int, error) {
	ln, err := listenStable()
	if err != nil {
		return 0, err
	}
	port := ln.Addr().(*net.TCPAddr).Port
	return port, ln.Close()
}

// ephemeralLow is the first port the kernel hands out for bind(0)/connect().
func ephemeralLow() int {
	data, err := os.ReadFile("/proc/sys/net/ipv4/ip_local_port_range")
	if err == nil {
		if fields := strings.Fields(string(data)); len(fields) == 2 {
			if n, err := strconv.Atoi(fields[0]); err == nil {
				return n
			}
		}
	}
	return 32768 // the Linux default
}
