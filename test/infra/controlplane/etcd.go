package main

import (
	"fmt"
	"net"
	"net/url"
	"path/filepath"
	"time"

	"go.etcd.io/etcd/server/v3/embed"
)

// startEtcd runs a single-member etcd inside this process, on loopback ports
// chosen fresh at every start (only the apiserver talks to it, so they need
// not be stable across restarts; the data dir is). It returns the client URL.
func startEtcd(dataDir string) (*embed.Etcd, string, error) {
	var lastErr error
	// A free port is found by binding :0 and closing; another process may
	// take it before etcd binds it. That race is rare on loopback, so a few
	// attempts are enough.
	for attempt := 0; attempt < 3; attempt++ {
		clientURL, err := freeLoopbackURL()
		if err != nil {
			return nil, "", err
		}
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
		// Compaction is the apiserver's job (--etcd-compaction-interval) or
		// the test's; etcd's own would make watch expiry non-deterministic.
		cfg.AutoCompactionRetention = "0"

		e, err := embed.StartEtcd(cfg)
		if err != nil {
			lastErr = err
			continue
		}
		select {
		case <-e.Server.ReadyNotify():
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
