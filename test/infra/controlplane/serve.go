package main

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"time"

	"github.com/spf13/pflag"
	"golang.org/x/sys/unix"
	genericapiserver "k8s.io/apiserver/pkg/server"
	"k8s.io/client-go/tools/clientcmd"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"
)

const (
	// serviceCIDR is the Service ClusterIP range; its first address is the
	// "kubernetes" Service and is one of the serving certificate's SANs.
	serviceCIDR      = "10.96.0.0/16"
	serviceClusterIP = "10.96.0.1"
	// serviceAccountIssuer is the iss of ServiceAccount tokens and their
	// default audience, as in kubeadm clusters.
	serviceAccountIssuer = "https://kubernetes.default.svc.cluster.local"
	readyTimeout         = 180 * time.Second
)

// readyLine is printed once, as one JSON line on stdout, when /readyz
// answers 200: the harness waits for it. Everything else goes to stderr.
type readyLine struct {
	Event      string `json:"event"` // "ready"
	Server     string `json:"server"`
	Kubeconfig string `json:"kubeconfig"`
	CAFile     string `json:"caFile"`
	Etcd       string `json:"etcd"`
	DataDir    string `json:"dataDir"`
	PID        int    `json:"pid"`
	StartupMs  int64  `json:"startupMs"`
}

func runServe(args []string) int {
	started := time.Now()
	fs := pflag.NewFlagSet("serve", pflag.ContinueOnError)
	dataDir := fs.String("data-dir", "", "directory for etcd data and certificates (kept across restarts; required)")
	port := fs.Int("port", 0, "secure port on 127.0.0.1 (0: a free one below the ephemeral range, so a restart can bind it again)")
	kubeconfigPath := fs.String("kubeconfig", "", "where to write the admin kubeconfig (default DATA_DIR/admin.kubeconfig)")
	extra := fs.StringArray("apiserver-arg", nil, "extra kube-apiserver flag, e.g. --apiserver-arg=--v=4 (repeatable; overrides the defaults)")
	exitWithParent := fs.Bool("exit-with-parent", true, "stop (as on SIGTERM) when the parent process dies, so a crashed test runner leaves no apiserver behind")
	if err := fs.Parse(args); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 2
	}
	if *dataDir == "" {
		fmt.Fprintln(os.Stderr, "serve: --data-dir is required")
		return 2
	}
	if *exitWithParent {
		// The apiserver's signal context turns SIGTERM into a clean shutdown.
		if err := unix.Prctl(unix.PR_SET_PDEATHSIG, uintptr(unix.SIGTERM), 0, 0, 0); err != nil {
			fmt.Fprintf(os.Stderr, "serve: prctl(PR_SET_PDEATHSIG): %v\n", err)
		}
		if os.Getppid() == 1 {
			fmt.Fprintln(os.Stderr, "serve: parent already gone, not starting")
			return 1
		}
	}
	// SIGTERM/SIGINT cancel this context: the apiserver shuts down, then
	// etcd is closed. A second signal exits at once (status 1).
	ctx := genericapiserver.SetupSignalContext()
	if err := serve(ctx, started, *dataDir, *port, *kubeconfigPath, *extra); err != nil {
		fmt.Fprintf(os.Stderr, "serve: %v\n", err)
		return 1
	}
	return 0
}

func serve(ctx context.Context, started time.Time, dataDir string, port int, kubeconfigPath string, extra []string) error {
	dataDir, err := filepath.Abs(dataDir)
	if err != nil {
		return err
	}
	if kubeconfigPath == "" {
		kubeconfigPath = filepath.Join(dataDir, "admin.kubeconfig")
	}
	if kubeconfigPath, err = filepath.Abs(kubeconfigPath); err != nil {
		return err
	}
	if err := os.MkdirAll(dataDir, 0o700); err != nil {
		return fmt.Errorf("creating data dir: %w", err)
	}
	p := newPKI(dataDir)
	if err := p.ensure(); err != nil {
		return err
	}

	// Bind the port ourselves and hand the listener to the apiserver: no
	// window in which another process could take a port we found free, and
	// a restart on the same port fails here, clearly, if it is taken.
	ln, err := listenSecure(port)
	if err != nil {
		return err
	}
	server := "https://" + ln.Addr().String()

	e, etcdURL, err := startEtcd(dataDir)
	if err != nil {
		ln.Close()
		return err
	}
	// etcd is closed last, after the apiserver has returned, so the
	// apiserver's shutdown can still write (lease, endpoint cleanup).
	defer func() {
		e.Close()
		fmt.Fprintln(os.Stderr, "serve: etcd closed")
	}()

	if err := writeKubeconfig(kubeconfigPath, server, p); err != nil {
		ln.Close()
		return fmt.Errorf("writing kubeconfig %s: %w", kubeconfigPath, err)
	}

	apiArgs := append(apiserverArgs(p, etcdURL), extra...)
	// runCtx ends on a signal or when the apiserver returns on its own.
	runCtx, apiDone := context.WithCancel(ctx)
	defer apiDone()
	apiErr := make(chan error, 1)
	go func() {
		apiErr <- runAPIServer(ctx, apiArgs, ln)
		apiDone()
	}()

	readyCtx, cancelReady := context.WithTimeout(runCtx, readyTimeout)
	err = waitReady(readyCtx, server, p)
	cancelReady()
	if err != nil {
		if ctx.Err() != nil {
			<-apiErr // stopped by a signal while starting: not an error
			return nil
		}
		select {
		case aerr := <-apiErr:
			return fmt.Errorf("kube-apiserver exited before it was ready: %v", aerr)
		default:
			return fmt.Errorf("kube-apiserver at %s: %w", server, err)
		}
	}
	line, _ := json.Marshal(readyLine{
		Event: "ready", Server: server, Kubeconfig: kubeconfigPath, CAFile: p.caCert,
		Etcd: etcdURL, DataDir: dataDir, PID: os.Getpid(), StartupMs: time.Since(started).Milliseconds(),
	})
	fmt.Println(string(line))

	select {
	case err := <-apiErr:
		if err != nil {
			return fmt.Errorf("kube-apiserver: %w", err)
		}
		return nil
	case err := <-e.Err():
		return fmt.Errorf("embedded etcd failed: %w", err)
	}
}

// apiserverArgs is the configuration of the test apiserver: as close to a
// kubeadm control plane as one process allows, minus what no test needs.
func apiserverArgs(p pki, etcdURL string) []string {
	return []string{
		"--advertise-address=127.0.0.1",
		"--etcd-servers=" + etcdURL,
		// Compaction happens only when a test asks etcd for it, so a watch
		// never expires by surprise in the middle of a test.
		"--etcd-compaction-interval=0",
		"--tls-cert-file=" + p.servingCert,
		"--tls-private-key-file=" + p.servingKey,
		"--client-ca-file=" + p.caCert,
		"--authorization-mode=RBAC",
		"--service-account-issuer=" + serviceAccountIssuer,
		"--service-account-key-file=" + p.serviceAccPub,
		"--service-account-signing-key-file=" + p.serviceAccountKey,
		"--service-cluster-ip-range=" + serviceCIDR,
		"--allow-privileged=true",
		// 127.0.0.1 is not a valid Endpoints address, and nothing here
		// routes to the kubernetes Service anyway.
		"--endpoint-reconciler-type=none",
		"--profiling=false",
		"--v=0",
	}
}

func waitReady(ctx context.Context, server string, p pki) error {
	client, err := adminHTTPClient(p)
	if err != nil {
		return err
	}
	last := errors.New("no answer yet")
	for {
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, server+"/readyz", nil)
		resp, err := client.Do(req)
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
			last = fmt.Errorf("/readyz answered %s", resp.Status)
		} else {
			last = err
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("not ready (%v): %w", last, ctx.Err())
		case <-time.After(100 * time.Millisecond):
		}
	}
}

func adminHTTPClient(p pki) (*http.Client, error) {
	caPEM, err := os.ReadFile(p.caCert)
	if err != nil {
		return nil, err
	}
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(caPEM)
	cert, err := tls.LoadX509KeyPair(p.adminCert, p.adminKey)
	if err != nil {
		return nil, err
	}
	return &http.Client{
		Timeout: 5 * time.Second,
		Transport: &http.Transport{TLSClientConfig: &tls.Config{
			RootCAs: pool, Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12,
		}},
	}, nil
}

// writeKubeconfig embeds the CA and the client credentials, so the file can
// be copied (e.g. into the test VM, with the server rewritten to 10.0.2.2).
func writeKubeconfig(path, server string, p pki) error {
	ca, err := os.ReadFile(p.caCert)
	if err != nil {
		return err
	}
	cert, err := os.ReadFile(p.adminCert)
	if err != nil {
		return err
	}
	key, err := os.ReadFile(p.adminKey)
	if err != nil {
		return err
	}
	cfg := clientcmdapi.NewConfig()
	cfg.Clusters["ipsec-test"] = &clientcmdapi.Cluster{Server: server, CertificateAuthorityData: ca}
	cfg.AuthInfos["admin"] = &clientcmdapi.AuthInfo{ClientCertificateData: cert, ClientKeyData: key}
	cfg.Contexts["admin@ipsec-test"] = &clientcmdapi.Context{Cluster: "ipsec-test", AuthInfo: "admin", Namespace: "default"}
	cfg.CurrentContext = "admin@ipsec-test"
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return err
	}
	tmp := path + ".tmp"
	if err := clientcmd.WriteToFile(*cfg, tmp); err != nil {
		return err
	}
	return os.Rename(tmp, path)
}
