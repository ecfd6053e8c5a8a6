package inject

import (
	"cmp"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"slices"
	"strconv"
	"strings"

	"github.com/hashicorp/go-multierror"
	"github.com/prometheus/client_golang/prometheus"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	"k8s.io/apimachinery/pkg/util/validation"

	"github.com/strait-mesh/strait/internal/ratelog"
)

// The annotations and label the injector reads and writes.
const (
	// AnnotationInject is "true" (inject, in any namespace) or "false"
	// (never inject) on a pod, and LabelInject=enabled on a namespace
	// injects its pods.
	AnnotationInject = "strait.io/inject"
	LabelInject      = "strait.io/inject"
	// AnnotationProxyConfig names the ConfigMap of the pod's namespace that
	// holds the proxy's config file (key proxy.yaml).
	AnnotationProxyConfig = "strait.io/proxy-config"
	// AnnotationCapture "false" leaves the pod's traffic alone: no capture
	// rules, and the proxy serves only its upstream listeners. Absent or
	// "true", the init container installs the capture rules (nftables over
	// netlink, from the same distroless image) and the proxy serves the
	// captured connections and DNS.
	AnnotationCapture = "strait.io/capture"
	// AnnotationInjected records that the injector added the sidecar.
	AnnotationInjected = "strait.io/injected"
)

// Names of what the injector adds to a pod. A pod with a container named
// ContainerProxy is taken as already injected.
const (
	ContainerProxy   = "strait-proxy"
	ContainerCapture = "strait-init"
	VolumeConfig     = "strait-proxy-config"
	VolumeState      = "strait-state"
	VolumeCA         = "strait-ca"
	// DefaultProxyGroup is the proxy's group without Config.ProxyGroup.
	DefaultProxyGroup = 1337
	// DefaultProxyConfigMap is the proxy's ConfigMap without
	// AnnotationProxyConfig.
	DefaultProxyConfigMap = "strait-proxy"
	// FederationConfigMap is the ConfigMap of the pod's namespace whose key
	// etcdEndpoint becomes the proxy's ETCD_ENDPOINT.
	FederationConfigMap = "strait-federation"
)

// Ports and paths of the injected containers.
const (
	inboundPort = 15006
	adminPort   = 15020
	configDir   = "/etc/strait/proxy"
	stateDir    = "/var/lib/strait"
	proxyBinary = "/usr/local/bin/strait-proxy"
	// initBinary installs the capture rules (nftables over netlink) and
	// hands directories to the proxy's user; a binary of its own so that
	// the sidecar carries none of that code.
	initBinary  = "/usr/local/bin/strait-init"
	proxyConfig = configDir + "/proxy.yaml"
)

// Config configures an Injector. Zero values mean the documented default.
type Config struct {
	// Image is the image of the injected containers (it holds
	// /usr/local/bin/strait-proxy and /usr/local/bin/strait-init). Zero
	// means "strait:dev".
	Image string
	// PullPolicy of the injected containers. Zero means IfNotPresent.
	PullPolicy corev1.PullPolicy
	// ProxyUser is the user the proxy runs as (and the group of the CA
	// directory). Zero means 65532, the image's non-root user, which the
	// built-in CA's files belong to.
	ProxyUser int64
	// ProxyGroup is the proxy's primary group, which the capture rules
	// exclude: the proxy runs without capabilities, so it cannot mark its
	// own connections (SO_MARK needs CAP_NET_ADMIN), and its group is what
	// tells them from the application's. An application container running
	// with this group is not captured. Zero means DefaultProxyGroup.
	ProxyGroup int64
	// CADir is the node directory (hostPath) of the built-in CA's roots,
	// mounted at the same path. Zero means /var/lib/strait/ca; "-" mounts
	// none (SPIRE: the proxy's config names the agent's socket).
	CADir string
	// Logger receives refusals (WARN, rate limited) and errors. Zero means
	// slog.Default().
	Logger *slog.Logger
	// Metrics registers strait_inject_*. Zero means not registered.
	Metrics prometheus.Registerer
}

func (c *Config) populate() {
	c.Image = cmp.Or(c.Image, "strait:dev")
	c.PullPolicy = cmp.Or(c.PullPolicy, corev1.PullIfNotPresent)
	c.ProxyUser = cmp.Or(c.ProxyUser, 65532)
	c.ProxyGroup = cmp.Or(c.ProxyGroup, DefaultProxyGroup)
	c.CADir = cmp.Or(c.CADir, "/var/lib/strait/ca")
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
}

func (c *Config) validate() error {
	var errs *multierror.Error
	if strings.ContainsAny(c.Image, " \t\n") {
		errs = multierror.Append(errs, fmt.Errorf("image %q has white space", c.Image))
	}
	switch c.PullPolicy {
	case corev1.PullAlways, corev1.PullIfNotPresent, corev1.PullNever:
	default:
		errs = multierror.Append(errs, fmt.Errorf("pull policy %q: want Always, IfNotPresent or Never", c.PullPolicy))
	}
	if c.ProxyUser < 1 || c.ProxyUser > math.MaxUint32 {
		errs = multierror.Append(errs, fmt.Errorf("proxy user %d: want a non-root user", c.ProxyUser))
	}
	if c.ProxyGroup < 1 || c.ProxyGroup > math.MaxUint32 {
		errs = multierror.Append(errs, fmt.Errorf("proxy group %d: want a group other than root's, which applications use", c.ProxyGroup))
	}
	if c.CADir != "-" && !strings.HasPrefix(c.CADir, "/") {
		errs = multierror.Append(errs, fmt.Errorf("CA dir %q is not absolute", c.CADir))
	}
	if err := errs.ErrorOrNil(); err != nil {
		return fmt.Errorf("inject: %w", err)
	}
	return nil
}

// Injector decides which pods get the sidecar and builds their patches. It
// is safe for concurrent use.
type Injector struct {
	cfg     Config
	metrics *metrics
	warn    *ratelog.Limiter
}

// New returns an Injector with cfg.
func New(cfg Config) (*Injector, error) {
	cfg.populate()
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	m := newMetrics()
	if cfg.Metrics != nil {
		if err := m.register(cfg.Metrics); err != nil {
			return nil, err
		}
	}
	return &Injector{cfg: cfg, metrics: m, warn: ratelog.New(ratelog.Config{})}, nil
}

// Mode says why the API server calls the injector for a pod.
type Mode int

const (
	// ModeNamespace: the pod's namespace is labelled strait.io/inject=enabled;
	// the pod is injected unless annotated strait.io/inject: "false".
	ModeNamespace Mode = iota
	// ModePod: any other namespace; the pod is injected only when annotated
	// strait.io/inject: "true".
	ModePod
)

// Result is what the injector did with a pod; it is the result label of
// strait_inject_reviews_total.
type Result string

const (
	ResultInjected        Result = "injected"
	ResultOptedOut        Result = "opted_out"
	ResultNotRequested    Result = "not_requested"
	ResultAlreadyInjected Result = "already_injected"
	ResultRefused         Result = "refused"
)

// Decide says whether pod gets the sidecar in mode. A refusal wraps
// ErrBadAnnotation.
func Decide(pod *corev1.Pod, mode Mode) (Result, error) {
	want, errInject := boolAnnotation(pod, AnnotationInject)
	_, errCapture := boolAnnotation(pod, AnnotationCapture)
	var errConfig error
	if name, ok := pod.Annotations[AnnotationProxyConfig]; ok {
		if msgs := validation.IsDNS1123Subdomain(name); len(msgs) > 0 {
			errConfig = fmt.Errorf("%w: %s %q: %s", ErrBadAnnotation, AnnotationProxyConfig, name, strings.Join(msgs, "; "))
		}
	}
	// Every problem at once, one per line.
	if err := errors.Join(errInject, errCapture, errConfig); err != nil {
		return ResultRefused, err
	}
	switch {
	case want != nil && !*want:
		return ResultOptedOut, nil
	case mode == ModePod && want == nil:
		return ResultNotRequested, nil
	case slices.ContainsFunc(pod.Spec.Containers, func(c corev1.Container) bool { return c.Name == ContainerProxy }):
		return ResultAlreadyInjected, nil
	}
	return ResultInjected, nil
}

// boolAnnotation reads an annotation that must be "true" or "false"; nil
// means absent.
func boolAnnotation(pod *corev1.Pod, key string) (*bool, error) {
	v, ok := pod.Annotations[key]
	if !ok {
		return nil, nil
	}
	switch v {
	case "true":
		return ptr(true), nil
	case "false":
		return ptr(false), nil
	}
	return nil, fmt.Errorf("%w: %s is %q, want \"true\" or \"false\"", ErrBadAnnotation, key, v)
}

func ptr[T any](v T) *T { return &v }

// Sidecar is what the injector adds to pod: the init container (the CA
// directory's owner, and the capture rules unless strait.io/capture is
// "false"), the proxy container and their volumes.
func (in *Injector) Sidecar(pod *corev1.Pod) (inits, containers []corev1.Container, volumes []corev1.Volume) {
	c := in.cfg
	want, _ := boolAnnotation(pod, AnnotationCapture)
	capture := want == nil || *want
	proxyCmd := []string{proxyBinary, "--config", proxyConfig}
	if capture {
		// The proxy has no capability to mark its connections: the rules
		// exclude its group instead.
		proxyCmd = append(proxyCmd, "--transparent", "--no-mark")
	}
	configMap := cmp.Or(pod.Annotations[AnnotationProxyConfig], DefaultProxyConfigMap)
	dropAll := &corev1.Capabilities{Drop: []corev1.Capability{"ALL"}}
	mounts := []corev1.VolumeMount{
		{Name: VolumeConfig, MountPath: configDir, ReadOnly: true},
		{Name: VolumeState, MountPath: stateDir},
	}
	volumes = []corev1.Volume{
		{Name: VolumeConfig, VolumeSource: corev1.VolumeSource{ConfigMap: &corev1.ConfigMapVolumeSource{
			LocalObjectReference: corev1.LocalObjectReference{Name: configMap}}}},
		{Name: VolumeState, VolumeSource: corev1.VolumeSource{EmptyDir: &corev1.EmptyDirVolumeSource{}}},
	}
	if c.CADir != "-" {
		mounts = append(mounts, corev1.VolumeMount{Name: VolumeCA, MountPath: c.CADir})
		volumes = append(volumes, corev1.Volume{Name: VolumeCA, VolumeSource: corev1.VolumeSource{HostPath: &corev1.HostPathVolumeSource{
			Path: c.CADir, Type: ptr(corev1.HostPathDirectoryOrCreate)}}})
	}
	fieldEnv := func(name, path string) corev1.EnvVar {
		return corev1.EnvVar{Name: name, ValueFrom: &corev1.EnvVarSource{FieldRef: &corev1.ObjectFieldSelector{FieldPath: path}}}
	}
	proxy := corev1.Container{
		Name:            ContainerProxy,
		Image:           c.Image,
		ImagePullPolicy: c.PullPolicy,
		Command:         proxyCmd,
		Env: []corev1.EnvVar{
			fieldEnv("POD_NAME", "metadata.name"),
			fieldEnv("POD_IP", "status.podIP"),
			{Name: "ETCD_ENDPOINT", ValueFrom: &corev1.EnvVarSource{ConfigMapKeyRef: &corev1.ConfigMapKeySelector{
				LocalObjectReference: corev1.LocalObjectReference{Name: FederationConfigMap}, Key: "etcdEndpoint"}}},
		},
		Ports: []corev1.ContainerPort{
			{Name: "strait-inbound", ContainerPort: inboundPort, Protocol: corev1.ProtocolTCP},
			{Name: "strait-admin", ContainerPort: adminPort, Protocol: corev1.ProtocolTCP},
		},
		ReadinessProbe: &corev1.Probe{ProbeHandler: corev1.ProbeHandler{HTTPGet: &corev1.HTTPGetAction{
			Path: "/healthz", Port: intOrString(adminPort)}}},
		Resources: corev1.ResourceRequirements{
			Requests: corev1.ResourceList{corev1.ResourceCPU: resource.MustParse("50m"), corev1.ResourceMemory: resource.MustParse("32Mi")},
			Limits:   corev1.ResourceList{corev1.ResourceMemory: resource.MustParse("256Mi")},
		},
		SecurityContext: &corev1.SecurityContext{
			RunAsUser: ptr(c.ProxyUser), RunAsGroup: ptr(c.ProxyGroup), RunAsNonRoot: ptr(true),
			AllowPrivilegeEscalation: ptr(false), ReadOnlyRootFilesystem: ptr(true), Capabilities: dropAll,
		},
		VolumeMounts: mounts,
	}
	// The init container installs the capture rules and hands the CA's
	// hostPath directory (created owned by root) to the proxy's user.
	args := []string{initBinary}
	var caps []corev1.Capability
	if capture {
		// The proxy's own connections are told by its group, not its user:
		// applications often run as the same non-root user. The rules are
		// programmed over netlink, which needs CAP_NET_ADMIN and no
		// CAP_NET_RAW (iptables needed it for its raw socket).
		args = append(args, "--exclude-gid", strconv.FormatInt(c.ProxyGroup, 10))
		caps = append(caps, "NET_ADMIN")
	} else {
		args = append(args, "--no-capture")
	}
	if c.CADir != "-" {
		args = append(args, "--own-dir", c.CADir, "--owner", fmt.Sprintf("%d:%d", c.ProxyUser, c.ProxyUser))
		caps = append(caps, "CHOWN")
	}
	if len(caps) > 0 {
		init := corev1.Container{
			Name:            ContainerCapture,
			Image:           c.Image,
			ImagePullPolicy: c.PullPolicy,
			Command:         args,
			SecurityContext: &corev1.SecurityContext{
				RunAsUser: ptr(int64(0)), RunAsNonRoot: ptr(false),
				AllowPrivilegeEscalation: ptr(false), ReadOnlyRootFilesystem: ptr(true),
				Capabilities: &corev1.Capabilities{Drop: []corev1.Capability{"ALL"}, Add: caps},
			},
		}
		if c.CADir != "-" {
			init.VolumeMounts = []corev1.VolumeMount{{Name: VolumeCA, MountPath: c.CADir}}
		}
		inits = append(inits, init)
	}
	return inits, []corev1.Container{proxy}, volumes
}
