// Command control-plane runs an embedded etcd and an in-process kube-apiserver on
// loopback, for integration tests and local demos. It writes an admin kubeconfig,
// prints "READY <kubeconfig>" on stdout once the API is usable, and shuts down
// cleanly on SIGTERM/SIGINT or, optionally, when its parent process goes away.
//
// There is no controller-manager, scheduler or kubelet: see the test rules for what
// that implies (no garbage collection, namespaces never finish terminating, ...).
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"go.etcd.io/etcd/server/v3/embed"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	genericapiserver "k8s.io/apiserver/pkg/server"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"
	"k8s.io/kubernetes/cmd/kube-apiserver/app"
)

const (
	etcdReadyTimeout      = 60 * time.Second
	apiserverReadyTimeout = 120 * time.Second
	pollInterval          = 250 * time.Millisecond
)

type options struct {
	workDir        string
	kubeconfig     string
	port           int
	keepDir        bool
	verbosity      int
	exitWithParent bool
	apiserverArgs  []string
}

type stringList []string

func (s *stringList) String() string     { return strings.Join(*s, " ") }
func (s *stringList) Set(v string) error { *s = append(*s, v); return nil }

func main() {
	os.Exit(run())
}

func run() int {
	// NewAPIServerCommand installs the process-wide SIGTERM/SIGINT handler when it is
	// constructed (genericapiserver.SetupSignalContext, which panics if called twice
	// and os.Exit(1)s on a second signal). Building it first means a signal during
	// our own start-up already cancels its context, and we never install a handler
	// of our own: we stop it with RequestShutdown instead.
	cmd := app.NewAPIServerCommand()
	ctx := cmd.Context()

	opts, err := parseOptions(os.Args[1:])
	if err != nil {
		fmt.Fprintf(os.Stderr, "control-plane: %v\n", err)
		return 2
	}

	createdWorkDir := false
	if opts.workDir == "" {
		dir, err := os.MkdirTemp("", "control-plane-")
		if err != nil {
			fmt.Fprintf(os.Stderr, "control-plane: work dir: %v\n", err)
			return 1
		}
		opts.workDir = dir
		createdWorkDir = true
	} else if err := os.MkdirAll(opts.workDir, 0o700); err != nil {
		fmt.Fprintf(os.Stderr, "control-plane: work dir: %v\n", err)
		return 1
	}
	defer func() {
		if opts.keepDir {
			fmt.Fprintf(os.Stderr, "control-plane: keeping %s\n", opts.workDir)
			return
		}
		// A caller-supplied work dir may hold the caller's own files (run.sh keeps its
		// logs there): only remove what we created.
		if createdWorkDir {
			_ = os.RemoveAll(opts.workDir)
		} else {
			_ = os.RemoveAll(filepath.Join(opts.workDir, "etcd"))
			_ = os.RemoveAll(filepath.Join(opts.workDir, "pki"))
		}
	}()
	if opts.kubeconfig == "" {
		opts.kubeconfig = filepath.Join(opts.workDir, "kubeconfig")
	}

	if opts.exitWithParent {
		go watchParent(ctx)
	}

	if err := serve(ctx, cmd, opts); err != nil {
		fmt.Fprintf(os.Stderr, "control-plane: %v\n", err)
		return 1
	}
	return 0
}

func parseOptions(args []string) (*options, error) {
	// A private FlagSet: the global one is shared with klog, whose -v would clash.
	fs := flag.NewFlagSet("control-plane", flag.ContinueOnError)
	o := &options{}
	var extra stringList
	fs.StringVar(&o.workDir, "work-dir", os.Getenv("CONTROL_PLANE_WORK_DIR"), "directory for etcd data and PKI (default: a new temporary directory)")
	fs.StringVar(&o.kubeconfig, "kubeconfig", os.Getenv("CONTROL_PLANE_KUBECONFIG_OUT"), "where to write the admin kubeconfig (default: <work-dir>/kubeconfig)")
	fs.IntVar(&o.port, "port", envInt("CONTROL_PLANE_PORT", 0), "apiserver secure port (default: a free port)")
	fs.BoolVar(&o.keepDir, "keep-dir", os.Getenv("CONTROL_PLANE_KEEP") == "1", "keep the work dir on exit")
	fs.IntVar(&o.verbosity, "verbosity", envInt("CONTROL_PLANE_VERBOSITY", 0), "kube-apiserver log verbosity (--v)")
	fs.BoolVar(&o.exitWithParent, "exit-with-parent", os.Getenv("CONTROL_PLANE_EXIT_WITH_PARENT") == "1", "shut down when the parent process exits")
	fs.Var(&extra, "apiserver-arg", "extra kube-apiserver flag, e.g. --apiserver-arg=--feature-gates=X=true (repeatable)")
	if err := fs.Parse(args); err != nil {
		return nil, err
	}
	if fs.NArg() > 0 {
		return nil, fmt.Errorf("unexpected arguments: %v", fs.Args())
	}
	if env := os.Getenv("CONTROL_PLANE_APISERVER_ARGS"); env != "" {
		extra = append(strings.Fields(env), extra...)
	}
	o.apiserverArgs = extra
	return o, nil
}

func envInt(name string, def int) int {
	if v, err := strconv.Atoi(os.Getenv(name)); err == nil {
		return v
	}
	return def
}

// watchParent asks for a shutdown once we have been re-parented, i.e. whoever
// started us is gone. Standard input is deliberately not used for this: CI runs
// without one.
func watchParent(ctx context.Context) {
	parent := os.Getppid()
	ticker := time.NewTicker(500 * time.Millisecond)
	defer ticker.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-ticker.C:
		}
		if os.Getppid() != parent {
			fmt.Fprintln(os.Stderr, "control-plane: parent process exited, shutting down")
			requestShutdown(ctx)
			return
		}
	}
}

// requestShutdown stops the apiserver as SIGTERM would. The signal handler treats a
// second request as a second signal and calls os.Exit(1), skipping our cleanup, so
// only ask while nothing has asked yet.
func requestShutdown(ctx context.Context) {
	if ctx.Err() == nil {
		genericapiserver.RequestShutdown()
	}
}

func serve(ctx context.Context, cmd interface {
	SetArgs([]string)
	Execute() error
}, opts *options) error {
	certs, err := newPKI(filepath.Join(opts.workDir, "pki"))
	if err != nil {
		return fmt.Errorf("pki: %w", err)
	}

	etcdClientPort, err := freePort()
	if err != nil {
		return err
	}
	etcdPeerPort, err := freePort()
	if err != nil {
		return err
	}
	port := opts.port
	if port == 0 {
		if port, err = freePort(); err != nil {
			return err
		}
	}

	etcd, err := startEtcd(ctx, opts.workDir, etcdClientPort, etcdPeerPort)
	if err != nil {
		return err
	}
	defer etcd.Close()

	server := fmt.Sprintf("https://127.0.0.1:%d", port)
	cmd.SetArgs(apiserverFlags(opts, certs, server, port, etcdClientPort))
	apiserverDone := make(chan error, 1)
	go func() { apiserverDone <- cmd.Execute() }()

	// Whatever happens from here on, wait for the apiserver to return before etcd is
	// closed underneath it.
	waitAPIServer := func() error {
		requestShutdown(ctx)
		select {
		case err := <-apiserverDone:
			return err
		case <-time.After(60 * time.Second):
			return errors.New("kube-apiserver did not stop within 60s")
		}
	}

	restConfig := &rest.Config{
		Host: server,
		TLSClientConfig: rest.TLSClientConfig{
			CAData:   certs.caPEM,
			CertData: certs.adminCertPEM,
			KeyData:  certs.adminKeyPEM,
		},
		Timeout: 5 * time.Second,
	}
	if err := waitReady(ctx, restConfig, apiserverDone, etcd); err != nil {
		if errors.Is(err, errAPIServerExited) {
			return err
		}
		_ = waitAPIServer()
		return err
	}

	if err := writeKubeconfig(opts.kubeconfig, server, certs); err != nil {
		_ = waitAPIServer()
		return err
	}
	envFile := filepath.Join(filepath.Dir(opts.kubeconfig), "control-plane.env")
	env := fmt.Sprintf("CONTROL_PLANE_SERVER=%s\nCONTROL_PLANE_PORT=%d\nCONTROL_PLANE_CA=%s\nCONTROL_PLANE_PID=%d\n",
		server, port, certs.caCert, os.Getpid())
	if err := atomicWrite(envFile, []byte(env)); err != nil {
		_ = waitAPIServer()
		return err
	}
	fmt.Printf("READY %s\n", opts.kubeconfig)

	select {
	case err := <-apiserverDone:
		if ctx.Err() != nil {
			// Normal path: a signal or RequestShutdown cancelled the context and the
			// apiserver drained.
			return nil
		}
		if err == nil {
			err = errors.New("returned without being asked to stop")
		}
		return fmt.Errorf("kube-apiserver: %w", err)
	case err := <-etcd.Err():
		_ = waitAPIServer()
		return fmt.Errorf("etcd: %w", err)
	}
}

func apiserverFlags(opts *options, certs *pki, server string, port, etcdPort int) []string {
	flags := []string{
		fmt.Sprintf("--etcd-servers=http://127.0.0.1:%d", etcdPort),
		"--bind-address=127.0.0.1",
		// Without it the apiserver looks for a default route, which sandboxes lack.
		"--advertise-address=127.0.0.1",
		fmt.Sprintf("--secure-port=%d", port),
		"--cert-dir=" + certs.dir,
		"--tls-cert-file=" + certs.servingCert,
		"--tls-private-key-file=" + certs.servKey,
		"--client-ca-file=" + certs.caCert,
		"--authorization-mode=RBAC",
		"--service-account-issuer=" + server,
		"--service-account-key-file=" + certs.saPublic,
		"--service-account-signing-key-file=" + certs.saPrivate,
		"--service-cluster-ip-range=10.0.0.0/24",
		// No service-account controller runs, so no "default" ServiceAccount ever
		// appears; the admission plugin would reject every Pod for lack of it.
		"--disable-admission-plugins=ServiceAccount",
		"--allow-privileged=true",
		// Saves CPU on small machines; request fairness is irrelevant for tests.
		"--enable-priority-and-fairness=false",
		"--profiling=false",
		fmt.Sprintf("--v=%d", opts.verbosity),
	}
	return append(flags, opts.apiserverArgs...)
}

func startEtcd(ctx context.Context, workDir string, clientPort, peerPort int) (*embed.Etcd, error) {
	cfg := embed.NewConfig()
	cfg.Dir = filepath.Join(workDir, "etcd")
	// A file of its own: embedded etcd logs a burst of "use of closed network
	// connection" errors on every clean shutdown, which would bury the apiserver's
	// messages that matter when start-up fails.
	cfg.LogOutputs = []string{filepath.Join(workDir, "etcd.log")}
	clientURL := url.URL{Scheme: "http", Host: fmt.Sprintf("127.0.0.1:%d", clientPort)}
	peerURL := url.URL{Scheme: "http", Host: fmt.Sprintf("127.0.0.1:%d", peerPort)}
	cfg.ListenClientUrls = []url.URL{clientURL}
	cfg.AdvertiseClientUrls = []url.URL{clientURL}
	cfg.ListenPeerUrls = []url.URL{peerURL}
	cfg.AdvertisePeerUrls = []url.URL{peerURL}
	cfg.InitialCluster = cfg.InitialClusterFromName(cfg.Name)
	// Test data is disposable; fsync dominates etcd latency on shared disks.
	cfg.UnsafeNoFsync = true
	cfg.LogLevel = "warn"
	// Lets the apiserver's watch cache notice progress without new writes, as the
	// kube-up and kubeadm etcd configurations do.
	cfg.WatchProgressNotifyInterval = 5 * time.Second

	e, err := embed.StartEtcd(cfg)
	if err != nil {
		return nil, fmt.Errorf("etcd: %w", err)
	}
	select {
	case <-e.Server.ReadyNotify():
		return e, nil
	case err := <-e.Err():
		e.Close()
		return nil, fmt.Errorf("etcd: %w", err)
	case <-ctx.Done():
		e.Close()
		return nil, errors.New("interrupted while starting etcd")
	case <-time.After(etcdReadyTimeout):
		e.Server.Stop()
		e.Close()
		return nil, fmt.Errorf("etcd not ready within %s", etcdReadyTimeout)
	}
}

var errAPIServerExited = errors.New("kube-apiserver exited during start-up")

// waitReady polls /readyz (which includes the RBAC bootstrap hook) and then waits
// for the "default" namespace, which the apiserver creates shortly after.
func waitReady(ctx context.Context, cfg *rest.Config, apiserverDone <-chan error, etcd *embed.Etcd) error {
	client, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		return err
	}
	deadline := time.After(apiserverReadyTimeout)
	ticker := time.NewTicker(pollInterval)
	defer ticker.Stop()
	readyz := false
	var lastErr error
	for {
		select {
		case err := <-apiserverDone:
			if err == nil {
				err = errors.New("no error reported")
			}
			return fmt.Errorf("%w: %v", errAPIServerExited, err)
		case err := <-etcd.Err():
			return fmt.Errorf("etcd failed during start-up: %w", err)
		case <-ctx.Done():
			return errors.New("interrupted while waiting for kube-apiserver")
		case <-deadline:
			return fmt.Errorf("kube-apiserver not ready within %s (last error: %v)", apiserverReadyTimeout, lastErr)
		case <-ticker.C:
		}
		if !readyz {
			body, err := client.Discovery().RESTClient().Get().AbsPath("/readyz").DoRaw(ctx)
			if err != nil {
				lastErr = fmt.Errorf("/readyz: %v: %s", err, strings.TrimSpace(string(body)))
				continue
			}
			readyz = true
		}
		if _, err := client.CoreV1().Namespaces().Get(ctx, "default", metav1.GetOptions{}); err != nil {
			lastErr = fmt.Errorf("namespace default: %w", err)
			continue
		}
		return nil
	}
}

// writeKubeconfig writes to a temporary name and renames it, so that a reader
// polling for the file never sees it half-written.
func writeKubeconfig(path, server string, certs *pki) error {
	cfg := clientcmdapi.NewConfig()
	cfg.Clusters["control-plane"] = &clientcmdapi.Cluster{
		Server:                   server,
		CertificateAuthorityData: certs.caPEM,
	}
	cfg.AuthInfos["admin"] = &clientcmdapi.AuthInfo{
		ClientCertificateData: certs.adminCertPEM,
		ClientKeyData:         certs.adminKeyPEM,
	}
	cfg.Contexts["control-plane"] = &clientcmdapi.Context{Cluster: "control-plane", AuthInfo: "admin", Namespace: "default"}
	cfg.CurrentContext = "control-plane"

	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return err
	}
	tmp := fmt.Sprintf("%s.tmp-%d", path, os.Getpid())
	if err := clientcmd.WriteToFile(*cfg, tmp); err != nil {
		return fmt.Errorf("kubeconfig: %w", err)
	}
	if err := os.Chmod(tmp, 0o600); err != nil {
		return err
	}
	return os.Rename(tmp, path)
}

func atomicWrite(path string, data []byte) error {
	tmp := fmt.Sprintf("%s.tmp-%d", path, os.Getpid())
	if err := os.WriteFile(tmp, data, 0o600); err != nil {
		return err
	}
	return os.Rename(tmp, path)
}

// freePort asks the kernel for an unused loopback port. Another process could take
// it before we bind it again; run.sh retries a start that failed that way.
func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}
