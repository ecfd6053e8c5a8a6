package kube

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/client-go/informers"
	corelisters "k8s.io/client-go/listers/core/v1"
	discoverylisters "k8s.io/client-go/listers/discovery/v1"
	"k8s.io/client-go/tools/cache"
	mcsv1alpha1 "sigs.k8s.io/mcs-api/pkg/apis/v1alpha1"
	mcsinformers "sigs.k8s.io/mcs-api/pkg/client/informers/externalversions"
	mcslisters "sigs.k8s.io/mcs-api/pkg/client/listers/apis/v1alpha1"

	"github.com/strait-mesh/strait/federation"
)

// ErrNoMCSAPI is returned (wrapped) when the cluster does not serve the MCS
// API: the ServiceExport and ServiceImport CRDs are not installed.
var ErrNoMCSAPI = errors.New("kube: the MCS API (multicluster.x-k8s.io/v1alpha1) is not served: install the ServiceExport and ServiceImport CRDs")

// Controller keeps one cluster's ServiceExports, ServiceImports and derived
// Services in step with the federation. Create it with NewController and
// call Run once.
type Controller struct {
	cfg     Config
	log     *slog.Logger
	metrics *metrics

	// poke wakes the loop; it holds at most one pending wake-up.
	poke chan struct{}

	// runMu is held by run: a run started late by the leader elector
	// waits for the previous one to end (it then sees its context done).
	runMu sync.Mutex

	// Listers, set by Run once the informers have synced.
	services  corelisters.ServiceLister
	slices    discoverylisters.EndpointSliceLister
	namespace corelisters.NamespaceLister
	exports   mcslisters.ServiceExportLister
	imports   mcslisters.ServiceImportLister
}

// NewController validates cfg and returns a controller.
func NewController(cfg Config) (*Controller, error) {
	if err := cfg.populate(); err != nil {
		return nil, err
	}
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	m := newMetrics()
	if err := m.register(cfg.Metrics); err != nil {
		return nil, err
	}
	return &Controller{
		cfg:     cfg,
		log:     cfg.Logger.With(logCluster, cfg.Cluster),
		metrics: m,
		poke:    make(chan struct{}, 1),
	}, nil
}

// Run watches the cluster and the federation and reconciles them until ctx
// ends, then returns ctx.Err(). It waits for the MCS API to be served and
// for the snapshot source to sync before the first reconciliation. A failed
// reconciliation is logged and retried with backoff; Run itself fails only
// when its watches cannot start. With Config.LeaderElection it reconciles
// only while it holds the Lease.
func (c *Controller) Run(ctx context.Context) error {
	if c.cfg.LeaderElection != nil {
		return c.runElected(ctx)
	}
	return c.run(ctx)
}

// isCanceled reports whether err only says that a context ended.
func isCanceled(err error) bool {
	return errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded)
}

func (c *Controller) run(ctx context.Context) error {
	c.runMu.Lock()
	defer c.runMu.Unlock()
	if ctx.Err() != nil {
		return ctx.Err()
	}
	if err := c.waitForMCSAPI(ctx); err != nil {
		return err
	}
	if s, ok := c.cfg.Snapshots.(interface{ Synced() <-chan struct{} }); ok {
		select {
		case <-s.Synced():
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	kf := informers.NewSharedInformerFactory(c.cfg.Kube, 0)
	mf := mcsinformers.NewSharedInformerFactory(c.cfg.MCS, 0)
	handler := cache.ResourceEventHandlerFuncs{
		AddFunc:    func(any) { c.wake() },
		UpdateFunc: func(any, any) { c.wake() },
		DeleteFunc: func(any) { c.wake() },
	}
	informersOf := []cache.SharedIndexInformer{
		kf.Core().V1().Services().Informer(),
		kf.Core().V1().Namespaces().Informer(),
		kf.Discovery().V1().EndpointSlices().Informer(),
		mf.Multicluster().V1alpha1().ServiceExports().Informer(),
		mf.Multicluster().V1alpha1().ServiceImports().Informer(),
	}
	for _, inf := range informersOf {
		if _, err := inf.AddEventHandler(handler); err != nil {
			return fmt.Errorf("kube: informer: %w", err)
		}
	}
	c.services = kf.Core().V1().Services().Lister()
	c.namespace = kf.Core().V1().Namespaces().Lister()
	c.slices = kf.Discovery().V1().EndpointSlices().Lister()
	c.exports = mf.Multicluster().V1alpha1().ServiceExports().Lister()
	c.imports = mf.Multicluster().V1alpha1().ServiceImports().Lister()
	kf.Start(ctx.Done())
	mf.Start(ctx.Done())
	defer kf.Shutdown()
	defer mf.Shutdown()
	for _, inf := range informersOf {
		if !cache.WaitForCacheSync(ctx.Done(), inf.HasSynced) {
			return ctx.Err()
		}
	}
	c.log.Info("kube controller started")
	return c.loop(ctx)
}

// wake asks the loop for a reconciliation without blocking.
func (c *Controller) wake() {
	select {
	case c.poke <- struct{}{}:
	default:
	}
}

// loop reconciles on every wake-up, snapshot change and resync tick, and
// retries failures with a doubling delay.
func (c *Controller) loop(ctx context.Context) error {
	resync := time.NewTicker(c.cfg.ResyncPeriod)
	defer resync.Stop()
	retry := time.NewTimer(0) // the first reconciliation runs at once
	defer retry.Stop()
	delay := c.cfg.RetryDelay
	for {
		changed := c.cfg.Snapshots.Changed()
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-c.poke:
		case <-changed:
		case <-resync.C:
		case <-retry.C:
		}
		if err := c.reconcile(ctx); err != nil {
			if ctx.Err() != nil {
				return ctx.Err()
			}
			c.log.Warn("reconcile failed", logError, err.Error(), logRetryIn, delay.String())
			retry.Reset(delay)
			delay = min(2*delay, c.cfg.ResyncPeriod)
			continue
		}
		delay = c.cfg.RetryDelay
	}
}

// reconcile runs one full reconciliation: exports first (so that the
// snapshot soon reflects them), then imports.
func (c *Controller) reconcile(ctx context.Context) error {
	start := time.Now()
	snap := c.cfg.Snapshots.Snapshot()
	errExp := c.reconcileExports(ctx, snap)
	errImp := c.reconcileImports(ctx, snap)
	c.metrics.duration.Observe(time.Since(start).Seconds())
	err := errors.Join(errExp, errImp)
	if err != nil {
		c.metrics.reconciles.WithLabelValues("error").Inc()
		return err
	}
	c.metrics.reconciles.WithLabelValues("ok").Inc()
	return nil
}

// waitForMCSAPI polls discovery until the cluster serves ServiceExports and
// ServiceImports, logging while it waits.
func (c *Controller) waitForMCSAPI(ctx context.Context) error {
	delay := c.cfg.RetryDelay
	for {
		err := c.mcsServed()
		if err == nil {
			return nil
		}
		c.log.Warn("waiting for the MCS API", logError, err.Error(), logRetryIn, delay.String())
		t := time.NewTimer(delay)
		select {
		case <-ctx.Done():
			t.Stop()
			return ctx.Err()
		case <-t.C:
		}
		delay = min(2*delay, c.cfg.ResyncPeriod)
	}
}

func (c *Controller) mcsServed() error {
	gv := mcsv1alpha1.SchemeGroupVersion.String()
	list, err := c.cfg.MCS.Discovery().ServerResourcesForGroupVersion(gv)
	if err != nil {
		return fmt.Errorf("%w: %w", ErrNoMCSAPI, err)
	}
	want := map[string]bool{"serviceexports": false, "serviceimports": false}
	for _, r := range list.APIResources {
		if _, ok := want[r.Name]; ok {
			want[r.Name] = true
		}
	}
	for name, ok := range want {
		if !ok {
			return fmt.Errorf("%w: %s is missing", ErrNoMCSAPI, name)
		}
	}
	return nil
}

// managedSelector selects the objects the controller owns.
func managedSelector() labels.Selector {
	return labels.SelectorFromSet(labels.Set{LabelManagedBy: ManagedBy})
}

// managed reports whether an object's labels say the controller owns it.
func managed(l map[string]string) bool { return l[LabelManagedBy] == ManagedBy }

// keyOf is the federation key of a namespaced name.
func keyOf(namespace, name string) federation.ServiceKey {
	return federation.ServiceKey{Namespace: namespace, Name: name}
}
