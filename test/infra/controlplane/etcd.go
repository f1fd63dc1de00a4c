package main

import (
	"errors"
	"fmt"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"go.etcd.io/etcd/server/v3/embed"
)

// startEtcd runs a single-member etcd inside this process, on loopback, and
// returns its client URL. The client port is chosen once per data dir (below
// the ephemeral range) and kept in DATA_DIR/etcd-client-port, so the URL a
// test was given (to compact etcd) stays valid across restarts; the peer
// port, used by nobody, is fresh each time.
func startEtcd(dataDir string) (*embed.Etcd, string, error) {
	portFile := filepath.Join(dataDir, "etcd-client-port")
	savedPort, err := readPort(portFile)
	if err != nil {
		return nil, "", err
	}
	var lastErr error
	// A free port is found by binding and closing; another process may take
	// it before etcd binds it. That race is rare on loopback, so a few
	// attempts are enough (only for a new data dir: a saved port is final).
	for attempt := 0; attempt < 3; attempt++ {
		clientPort := savedPort
		if clientPort == 0 {
			if clientPort, err = freeStablePort(); err != nil {
				return nil, "", err
			}
		}
		clientURL := &url.URL{Scheme: "http", Host: net.JoinHostPort("127.0.0.1", strconv.Itoa(clientPort))}
		peerURL, err := freeLoopbackURL()
		if err != nil {
			return nil, "", err
		}
		cfg := embed.NewConfig()
		cfg.Name = "ipsec-controlplane"
		cfg.Dir = filepath.Join(dataDir, "etcd")
		cfg.ListenClientUrls = []url.URL{*clientURL}
		cfg.AdvertiseClientUrls = []url.URL{*clientURL}
		cfg.ListenPeerUrls = []url.URL{*peerURL}
		cfg.AdvertisePeerUrls = []url.URL{*peerURL}
		cfg.InitialCluster = cfg.InitialClusterFromName(cfg.Name)
		cfg.LogLevel = "warn"
		// Tests need no durability against power loss: the page cache
		// survives a killed process, and fsync dominates write latency on a
		// shared 2-core machine.
		cfg.UnsafeNoFsync = true
		// The grpc-gateway (JSON over HTTP on the client URL) stays on (the
		// default): tests use its /v3/kv/compaction to compact on demand.
		cfg.EnableGRPCGateway = true
		// Compaction is the test's job (the apiserver runs with
		// --etcd-compaction-interval=0): etcd's own would make watch expiry
		// non-deterministic.
		cfg.AutoCompactionRetention = "0"

		e, err := embed.StartEtcd(cfg)
		if err != nil {
			lastErr = fmt.Errorf("client port %d: %w", clientPort, err)
			if savedPort != 0 {
				break
			}
			continue
		}
		select {
		case <-e.Server.ReadyNotify():
			if savedPort == 0 {
				if err := os.WriteFile(portFile, []byte(strconv.Itoa(clientPort)+"\n"), 0o600); err != nil {
					e.Close()
					return nil, "", err
				}
			}
			return e, clientURL.String(), nil
		case err := <-e.Err():
			e.Close()
			lastErr = err
		case <-time.After(60 * time.Second):
			e.Server.Stop()
			e.Close()
			return nil, "", fmt.Errorf("embedded etcd in %s was not ready after 60s", cfg.Dir)
		}
	}
	return nil, "", fmt.Errorf("embedded etcd did not start: %w", lastErr)
}

func readPort(path string) (int, error) {
	data, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		return 0, nil
	}
	if err != nil {
		return 0, err
	}
	port, err := strconv.Atoi(strings.TrimSpace(string(data)))
	if err != nil || port <= 0 || port > 65535 {
		return 0, fmt.Errorf("%s: not a port number (delete it to choose a new port)", path)
	}
	return port, nil
}

func freeLoopbackURL() (*url.URL, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, fmt.Errorf("finding a free loopback port: %w", err)
	}
	addr := l.Addr().String()
	if err := l.Close(); err != nil {
		return nil, err
	}
	return &url.URL{Scheme: "http", Host: addr}, nil
}
