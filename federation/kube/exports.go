package kube

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"

	"google.golang.org/protobuf/proto"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	mcsv1alpha1 "sigs.k8s.io/mcs-api/pkg/apis/v1alpha1"

	"github.com/strait-mesh/strait/federation"
	straitv1 "github.com/strait-mesh/strait/proto/strait/v1"
)

// Reasons of the conditions the controller sets besides the MCS API's own.
const (
	// ReasonInvalidConsumers: the strait.io/consumers annotation does not
	// parse (Valid=False).
	ReasonInvalidConsumers = "InvalidConsumers"
	// ReasonUnsupportedProtocol: a port is not TCP (Valid=False). Strait
	// carries TCP only: a service with a UDP or SCTP port is not exported.
	ReasonUnsupportedProtocol = "UnsupportedProtocol"
	// ReasonInvalidServers: the strait.io/servers annotation names
	// something that is not a service account name (Valid=False).
	ReasonInvalidServers = "InvalidServers"
)

// exportResult is what one ServiceExport's reconciliation found.
type exportResult struct {
	valid, conflict bool
}

// reconcileExports reconciles every ServiceExport of the cluster.
func (c *Controller) reconcileExports(ctx context.Context, snap *federation.Snapshot) error {
	list, err := c.exports.List(labels.Everything())
	if err != nil {
		return fmt.Errorf("kube: list service exports: %w", err)
	}
	var errs []error
	valid, conflicts := 0, 0
	for _, se := range list {
		res, err := c.reconcileExport(ctx, snap, se)
		if err != nil {
			errs = append(errs, fmt.Errorf("kube: service export %s/%s: %w", se.Namespace, se.Name, err))
		}
		if res.valid {
			valid++
		}
		if res.conflict {
			conflicts++
		}
	}
	c.metrics.exports.Set(float64(valid))
	c.metrics.conflicts.Set(float64(conflicts))
	return errors.Join(errs...)
}

// reconcileExport writes or withdraws the Export of one ServiceExport and
// updates its conditions.
func (c *Controller) reconcileExport(ctx context.Context, snap *federation.Snapshot, se *mcsv1alpha1.ServiceExport) (exportResult, error) {
	key := keyOf(se.Namespace, se.Name)
	if se.DeletionTimestamp != nil {
		return exportResult{}, c.finalizeExport(ctx, se)
	}
	if !slices.Contains(se.Finalizers, Finalizer) {
		next := se.DeepCopy()
		next.Finalizers = append(next.Finalizers, Finalizer)
		updated, err := c.cfg.MCS.MulticlusterV1alpha1().ServiceExports(se.Namespace).Update(ctx, next, metav1.UpdateOptions{FieldManager: FieldManager})
		if err != nil {
			c.metrics.apiErrors.WithLabelValues("add_finalizer").Inc()
			return exportResult{}, fmt.Errorf("add finalizer: %w", err)
		}
		se = updated
	}

	var svc *corev1.Service
	svc, err := c.services.Services(se.Namespace).Get(se.Name)
	if err != nil && !apierrors.IsNotFound(err) {
		return exportResult{}, err
	}
	if apierrors.IsNotFound(err) {
		svc = nil
	}
	want, reason, msg := c.exportFor(svc, se)
	conds := slices.Clone(se.Status.Conditions)
	set := func(t mcsv1alpha1.ServiceExportConditionType, ok bool, reason, msg string) {
		status := metav1.ConditionFalse
		if ok {
			status = metav1.ConditionTrue
		}
		meta.SetStatusCondition(&conds, metav1.Condition{
			Type: string(t), Status: status, Reason: reason, Message: msg, ObservedGeneration: se.Generation,
		})
	}
	var res exportResult
	var writeErr error
	cur := snap.Export(c.cfg.Cluster, key)
	if want == nil {
		set(mcsv1alpha1.ServiceExportConditionValid, false, reason, msg)
		set(mcsv1alpha1.ServiceExportConditionReady, false, string(mcsv1alpha1.ServiceExportReasonFailed), "the service is not exported: "+msg)
		meta.RemoveStatusCondition(&conds, string(mcsv1alpha1.ServiceExportConditionConflict))
		if cur != nil {
			writeErr = c.withdraw(ctx, key)
		}
	} else {
		res.valid = true
		set(mcsv1alpha1.ServiceExportConditionValid, true, string(mcsv1alpha1.ServiceExportReasonValid), "the service is exported to the federation")
		switch {
		case cur != nil && sameExport(cur, want):
			set(mcsv1alpha1.ServiceExportConditionReady, true, string(mcsv1alpha1.ServiceExportReasonReady), "the export is in the federation snapshot")
		default:
			if _, err := c.cfg.Store.PutExport(ctx, want); err != nil {
				c.metrics.apiErrors.WithLabelValues("put_export").Inc()
				writeErr = fmt.Errorf("put export: %w", err)
				set(mcsv1alpha1.ServiceExportConditionReady, false, string(mcsv1alpha1.ServiceExportReasonFailed), "writing the export to etcd failed: "+err.Error())
			} else {
				set(mcsv1alpha1.ServiceExportConditionReady, false, string(mcsv1alpha1.ServiceExportReasonPending), "the export is written; waiting for the federation snapshot")
			}
		}
		res.conflict = c.setConflict(snap, key, set)
	}
	if equality.Semantic.DeepEqual(conds, se.Status.Conditions) {
		return res, writeErr
	}
	next := se.DeepCopy()
	next.Status.Conditions = conds
	if _, err := c.cfg.MCS.MulticlusterV1alpha1().ServiceExports(se.Namespace).UpdateStatus(ctx, next, metav1.UpdateOptions{FieldManager: FieldManager}); err != nil {
		c.metrics.apiErrors.WithLabelValues("update_export_status").Inc()
		return res, errors.Join(writeErr, fmt.Errorf("update status: %w", err))
	}
	return res, writeErr
}

// setConflict sets the Conflict condition from the snapshot's resolution
// of the global service and reports whether it is true. Following KEP-1645
// it is raised on every constituent export, not only the losing ones.
func (c *Controller) setConflict(snap *federation.Snapshot, key federation.ServiceKey, set func(mcsv1alpha1.ServiceExportConditionType, bool, string, string)) bool {
	gs, ok := snap.Service(key)
	if !ok || len(gs.Conflicts) == 0 {
		set(mcsv1alpha1.ServiceExportConditionConflict, false, string(mcsv1alpha1.ServiceExportReasonNoConflicts), "no conflicts with the exports of other clusters")
		return false
	}
	var mine, others []string
	for _, cf := range gs.Conflicts {
		if cf.Cluster == c.cfg.Cluster {
			mine = append(mine, cf.Reason)
		} else {
			others = append(others, "cluster "+cf.Cluster+": "+cf.Reason)
		}
	}
	var msg string
	if len(mine) > 0 {
		msg = "this cluster's export conflicts with the oldest export, whose ports are used: " + strings.Join(mine, "; ")
	} else {
		msg = "other clusters' exports conflict with the ports in use: " + strings.Join(others, "; ")
	}
	set(mcsv1alpha1.ServiceExportConditionConflict, true, string(mcsv1alpha1.ServiceExportReasonPortConflict), msg)
	return true
}

// exportFor is the Export a ServiceExport asks for, or nil with the reason
// and message of a false Valid condition.
func (c *Controller) exportFor(svc *corev1.Service, se *mcsv1alpha1.ServiceExport) (*straitv1.Export, string, string) {
	if svc == nil {
		return nil, string(mcsv1alpha1.ServiceExportReasonNoService), "service " + se.Namespace + "/" + se.Name + " does not exist"
	}
	if svc.Spec.Type == corev1.ServiceTypeExternalName {
		return nil, string(mcsv1alpha1.ServiceExportReasonInvalidServiceType), "an ExternalName service cannot be exported"
	}
	if len(svc.Spec.Ports) == 0 {
		return nil, string(mcsv1alpha1.ServiceExportReasonInvalidServiceType), "the service has no ports"
	}
	e := &straitv1.Export{Cluster: c.cfg.Cluster, Namespace: se.Namespace, Service: se.Name}
	var unsupported []string
	for _, p := range svc.Spec.Ports {
		if p.Protocol != corev1.ProtocolTCP && p.Protocol != "" {
			unsupported = append(unsupported, fmt.Sprintf("%s %d/%s", portName(p), p.Port, p.Protocol))
			continue
		}
		e.Ports = append(e.Ports, &straitv1.ServicePort{Name: portName(p), Port: uint32(p.Port), Protocol: straitv1.Protocol_PROTOCOL_TCP})
	}
	if len(unsupported) > 0 {
		return nil, ReasonUnsupportedProtocol, "Strait carries TCP only; the service cannot be exported while it has the ports " +
			strings.Join(unsupported, ", ")
	}
	var bad []string
	for c := range strings.SplitSeq(se.Annotations[AnnotationConsumers], ",") {
		c = strings.TrimSpace(c)
		if c == "" {
			continue
		}
		if err := federation.ValidateConsumer(c); err != nil {
			bad = append(bad, err.Error())
			continue
		}
		e.Consumers = append(e.Consumers, c)
	}
	if len(bad) > 0 {
		return nil, ReasonInvalidConsumers, AnnotationConsumers + ": " + strings.Join(bad, "; ")
	}
	for sa := range strings.SplitSeq(se.Annotations[AnnotationServers], ",") {
		sa = strings.TrimSpace(sa)
		if sa == "" {
			continue
		}
		if err := federation.ValidateServiceAccount(sa); err != nil {
			bad = append(bad, err.Error())
			continue
		}
		if !slices.Contains(e.Servers, sa) {
			e.Servers = append(e.Servers, sa)
		}
	}
	if len(bad) > 0 {
		return nil, ReasonInvalidServers, AnnotationServers + ": " + strings.Join(bad, "; ")
	}
	return e, "", ""
}

// portName names a service port in the federation: its own name, or
// "<protocol>-<port>" for the single unnamed port a Service may have.
func portName(p corev1.ServicePort) string {
	if p.Name != "" {
		return p.Name
	}
	proto := p.Protocol
	if proto == "" {
		proto = corev1.ProtocolTCP
	}
	return strings.ToLower(string(proto)) + "-" + strconv.Itoa(int(p.Port))
}

// sameExport reports whether the stored export already says what want says
// (CreatedAt aside, which the store keeps).
func sameExport(cur, want *straitv1.Export) bool {
	a := proto.Clone(cur).(*straitv1.Export)
	b := proto.Clone(want).(*straitv1.Export)
	a.CreatedAt, b.CreatedAt = nil, nil
	a.Failover, b.Failover = nil, nil
	return proto.Equal(a, b)
}

// withdraw deletes the cluster's Export of a service; one already gone is
// not an error.
func (c *Controller) withdraw(ctx context.Context, key federation.ServiceKey) error {
	err := c.cfg.Store.DeleteExport(ctx, c.cfg.Cluster, key.Namespace, key.Name)
	if err != nil && !errors.Is(err, federation.ErrNotFound) {
		c.metrics.apiErrors.WithLabelValues("delete_export").Inc()
		return fmt.Errorf("delete export: %w", err)
	}
	if err == nil {
		c.log.Info("export withdrawn", logNamespace, key.Namespace, logName, key.Name)
	}
	return nil
}

// finalizeExport withdraws the Export of a ServiceExport being deleted and
// then lets the deletion finish by removing the finalizer.
func (c *Controller) finalizeExport(ctx context.Context, se *mcsv1alpha1.ServiceExport) error {
	if !slices.Contains(se.Finalizers, Finalizer) {
		return nil
	}
	if err := c.withdraw(ctx, keyOf(se.Namespace, se.Name)); err != nil {
		return err
	}
	next := se.DeepCopy()
	next.Finalizers = slices.DeleteFunc(next.Finalizers, func(f string) bool { return f == Finalizer })
	if _, err := c.cfg.MCS.MulticlusterV1alpha1().ServiceExports(se.Namespace).Update(ctx, next, metav1.UpdateOptions{FieldManager: FieldManager}); err != nil && !apierrors.IsNotFound(err) {
		c.metrics.apiErrors.WithLabelValues("remove_finalizer").Inc()
		return fmt.Errorf("remove finalizer: %w", err)
	}
	return nil
}
