package kube

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"slices"
	"strconv"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/utils/ptr"
	mcsv1alpha1 "sigs.k8s.io/mcs-api/pkg/apis/v1alpha1"

	"github.com/strait-mesh/strait/federation"
	straitv1 "github.com/strait-mesh/strait/proto/strait/v1"
)

// egressAddr is one address of the cluster's gateway egress.
type egressAddr struct {
	ip   netip.Addr
	port int32
}

// reconcileImports keeps one ServiceImport, derived Service and
// EndpointSlices per global service, and deletes the managed objects of
// services that are no longer exported.
func (c *Controller) reconcileImports(ctx context.Context, snap *federation.Snapshot) error {
	egress := c.egressAddrs(ctx, snap)
	want := map[federation.ServiceKey]bool{}
	var errs []error
	for _, key := range snap.Services() {
		if _, err := c.namespace.Get(key.Namespace); err != nil {
			// Namespace sameness: a service is imported only where its
			// namespace exists.
			continue
		}
		gs, ok := snap.Service(key)
		if !ok {
			continue
		}
		want[key] = true
		if err := c.reconcileImport(ctx, gs, egress); err != nil {
			errs = append(errs, fmt.Errorf("kube: service import %s/%s: %w", key.Namespace, key.Name, err))
		}
	}
	errs = append(errs, c.deleteStale(ctx, want))
	return errors.Join(errs...)
}

// reconcileImport keeps the ServiceImport of one global service, its
// derived Service and its EndpointSlices.
func (c *Controller) reconcileImport(ctx context.Context, gs federation.GlobalService, egress []egressAddr) error {
	si, err := c.ensureServiceImport(ctx, gs)
	if err != nil || si == nil {
		return err
	}
	svc, err := c.ensureDerivedService(ctx, gs, si)
	if err != nil || svc == nil {
		return err
	}
	if err := c.ensureImportStatus(ctx, gs, si, svc); err != nil {
		return err
	}
	return c.ensureSlices(ctx, gs, si, egress)
}

// ensureServiceImport creates or updates the ServiceImport's spec; nil
// means an unmanaged ServiceImport of that name exists and is left alone.
func (c *Controller) ensureServiceImport(ctx context.Context, gs federation.GlobalService) (*mcsv1alpha1.ServiceImport, error) {
	client := c.cfg.MCS.MulticlusterV1alpha1().ServiceImports(gs.Key.Namespace)
	cur, err := c.imports.ServiceImports(gs.Key.Namespace).Get(gs.Key.Name)
	if apierrors.IsNotFound(err) {
		si := &mcsv1alpha1.ServiceImport{
			ObjectMeta: metav1.ObjectMeta{Name: gs.Key.Name, Namespace: gs.Key.Namespace, Labels: map[string]string{LabelManagedBy: ManagedBy}},
			Spec:       mcsv1alpha1.ServiceImportSpec{Type: mcsv1alpha1.ClusterSetIP, Ports: importPorts(gs.Ports)},
		}
		created, err := client.Create(ctx, si, metav1.CreateOptions{FieldManager: FieldManager})
		if err != nil {
			c.metrics.apiErrors.WithLabelValues("create_service_import").Inc()
			return nil, fmt.Errorf("create: %w", err)
		}
		c.log.Info("service imported", logNamespace, gs.Key.Namespace, logName, gs.Key.Name)
		return created, nil
	}
	if err != nil {
		return nil, err
	}
	if !managed(cur.Labels) {
		c.log.Debug("service import not managed by strait: left alone", logNamespace, gs.Key.Namespace, logName, gs.Key.Name)
		return nil, nil
	}
	ports := importPorts(gs.Ports)
	if cur.Spec.Type == mcsv1alpha1.ClusterSetIP && equality.Semantic.DeepEqual(cur.Spec.Ports, ports) {
		return cur, nil
	}
	next := cur.DeepCopy()
	next.Spec.Type, next.Spec.Ports = mcsv1alpha1.ClusterSetIP, ports
	updated, err := client.Update(ctx, next, metav1.UpdateOptions{FieldManager: FieldManager})
	if err != nil {
		c.metrics.apiErrors.WithLabelValues("update_service_import").Inc()
		return nil, fmt.Errorf("update: %w", err)
	}
	return updated, nil
}

// ensureImportStatus sets the ServiceImport's IP (the derived Service's
// cluster IP) and the clusters serving it.
func (c *Controller) ensureImportStatus(ctx context.Context, gs federation.GlobalService, si *mcsv1alpha1.ServiceImport, svc *corev1.Service) error {
	client := c.cfg.MCS.MulticlusterV1alpha1().ServiceImports(gs.Key.Namespace)
	var ips []string
	if ip := svc.Spec.ClusterIP; ip != "" && ip != corev1.ClusterIPNone {
		ips = []string{ip}
	}
	if !slices.Equal(si.Spec.IPs, ips) {
		next := si.DeepCopy()
		next.Spec.IPs = ips
		updated, err := client.Update(ctx, next, metav1.UpdateOptions{FieldManager: FieldManager})
		if err != nil {
			c.metrics.apiErrors.WithLabelValues("update_service_import").Inc()
			return fmt.Errorf("update ips: %w", err)
		}
		si = updated
	}
	clusters := make([]mcsv1alpha1.ClusterStatus, 0, len(gs.Clusters))
	for _, cl := range gs.Clusters {
		clusters = append(clusters, mcsv1alpha1.ClusterStatus{Cluster: cl})
	}
	slices.SortFunc(clusters, func(a, b mcsv1alpha1.ClusterStatus) int { return cmp.Compare(a.Cluster, b.Cluster) })
	if equality.Semantic.DeepEqual(si.Status.Clusters, clusters) || (len(si.Status.Clusters) == 0 && len(clusters) == 0) {
		return nil
	}
	next := si.DeepCopy()
	next.Status.Clusters = clusters
	if _, err := client.UpdateStatus(ctx, next, metav1.UpdateOptions{FieldManager: FieldManager}); err != nil {
		c.metrics.apiErrors.WithLabelValues("update_service_import_status").Inc()
		return fmt.Errorf("update status: %w", err)
	}
	return nil
}

// ensureDerivedService creates or updates the selector-less Service whose
// cluster IP is the ServiceImport's. nil means an unmanaged Service of
// that name exists and is left alone.
func (c *Controller) ensureDerivedService(ctx context.Context, gs federation.GlobalService, si *mcsv1alpha1.ServiceImport) (*corev1.Service, error) {
	name := DerivedServiceName(gs.Key.Name)
	client := c.cfg.Kube.CoreV1().Services(gs.Key.Namespace)
	labels := map[string]string{LabelManagedBy: ManagedBy, LabelServiceName: gs.Key.Name}
	ports := derivedPorts(gs.Ports)
	cur, err := c.services.Services(gs.Key.Namespace).Get(name)
	if apierrors.IsNotFound(err) {
		svc := &corev1.Service{
			ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: gs.Key.Namespace, Labels: labels, OwnerReferences: ownedBy(si)},
			Spec:       corev1.ServiceSpec{Type: corev1.ServiceTypeClusterIP, Ports: ports},
		}
		created, err := client.Create(ctx, svc, metav1.CreateOptions{FieldManager: FieldManager})
		if err != nil {
			c.metrics.apiErrors.WithLabelValues("create_service").Inc()
			return nil, fmt.Errorf("create derived service: %w", err)
		}
		return created, nil
	}
	if err != nil {
		return nil, err
	}
	if !managed(cur.Labels) {
		c.log.Warn("a service not managed by strait has the derived service's name: import skipped", logNamespace, gs.Key.Namespace, logName, name)
		return nil, nil
	}
	if equality.Semantic.DeepEqual(cur.Spec.Ports, ports) && cur.Labels[LabelServiceName] == gs.Key.Name {
		return cur, nil
	}
	next := cur.DeepCopy()
	next.Spec.Ports, next.Labels = ports, labels
	next.OwnerReferences = ownedBy(si)
	updated, err := client.Update(ctx, next, metav1.UpdateOptions{FieldManager: FieldManager})
	if err != nil {
		c.metrics.apiErrors.WithLabelValues("update_service").Inc()
		return nil, fmt.Errorf("update derived service: %w", err)
	}
	return updated, nil
}

// ensureSlices keeps one EndpointSlice per address family and egress port
// of the derived Service, and deletes the others.
func (c *Controller) ensureSlices(ctx context.Context, gs federation.GlobalService, si *mcsv1alpha1.ServiceImport, egress []egressAddr) error {
	derived := DerivedServiceName(gs.Key.Name)
	client := c.cfg.Kube.DiscoveryV1().EndpointSlices(gs.Key.Namespace)
	want := desiredSlices(gs, derived, egress)
	var errs []error
	for _, s := range want {
		s.OwnerReferences = ownedBy(si)
		cur, err := c.slices.EndpointSlices(gs.Key.Namespace).Get(s.Name)
		switch {
		case apierrors.IsNotFound(err):
			if _, err := client.Create(ctx, s, metav1.CreateOptions{FieldManager: FieldManager}); err != nil {
				c.metrics.apiErrors.WithLabelValues("create_endpoint_slice").Inc()
				errs = append(errs, fmt.Errorf("create endpoint slice %s: %w", s.Name, err))
			}
		case err != nil:
			errs = append(errs, err)
		case !managed(cur.Labels):
			c.log.Warn("an endpoint slice not managed by strait has a derived slice's name", logNamespace, gs.Key.Namespace, logName, s.Name)
		case equality.Semantic.DeepEqual(cur.Endpoints, s.Endpoints) && equality.Semantic.DeepEqual(cur.Ports, s.Ports) &&
			equality.Semantic.DeepEqual(cur.Labels, s.Labels):
		default:
			next := cur.DeepCopy()
			next.Labels, next.Endpoints, next.Ports, next.OwnerReferences = s.Labels, s.Endpoints, s.Ports, s.OwnerReferences
			if _, err := client.Update(ctx, next, metav1.UpdateOptions{FieldManager: FieldManager}); err != nil {
				c.metrics.apiErrors.WithLabelValues("update_endpoint_slice").Inc()
				errs = append(errs, fmt.Errorf("update endpoint slice %s: %w", s.Name, err))
			}
		}
	}
	existing, err := c.slices.EndpointSlices(gs.Key.Namespace).List(managedSelector())
	if err != nil {
		return errors.Join(append(errs, err)...)
	}
	for _, s := range existing {
		if s.Labels[LabelKubeServiceName] != derived {
			continue
		}
		if !slices.ContainsFunc(want, func(w *discoveryv1.EndpointSlice) bool { return w.Name == s.Name }) {
			errs = append(errs, c.deleteSlice(ctx, s))
		}
	}
	return errors.Join(errs...)
}

// desiredSlices are the EndpointSlices of a derived Service: one per
// address family and egress port, every TCP service port mapped to the
// egress port.
func desiredSlices(gs federation.GlobalService, derived string, egress []egressAddr) []*discoveryv1.EndpointSlice {
	type group struct {
		family discoveryv1.AddressType
		port   int32
	}
	byGroup := map[group][]string{}
	for _, a := range egress {
		g := group{family: discoveryv1.AddressTypeIPv4, port: a.port}
		if a.ip.Is6() {
			g.family = discoveryv1.AddressTypeIPv6
		}
		byGroup[g] = append(byGroup[g], a.ip.String())
	}
	var out []*discoveryv1.EndpointSlice
	for g, ips := range byGroup {
		slices.Sort(ips)
		ips = slices.Compact(ips)
		s := &discoveryv1.EndpointSlice{
			ObjectMeta: metav1.ObjectMeta{
				Name:      derived + "-" + map[discoveryv1.AddressType]string{discoveryv1.AddressTypeIPv4: "ipv4", discoveryv1.AddressTypeIPv6: "ipv6"}[g.family] + "-" + strconv.Itoa(int(g.port)),
				Namespace: gs.Key.Namespace,
				Labels: map[string]string{
					LabelManagedBy: ManagedBy, LabelServiceName: gs.Key.Name,
					LabelKubeServiceName: derived, LabelEndpointSliceManagedBy: EndpointSliceManager,
				},
			},
			AddressType: g.family,
		}
		for _, ip := range ips {
			s.Endpoints = append(s.Endpoints, discoveryv1.Endpoint{
				Addresses:  []string{ip},
				Conditions: discoveryv1.EndpointConditions{Ready: ptr.To(true), Serving: ptr.To(true), Terminating: ptr.To(false)},
			})
		}
		for _, p := range gs.Ports {
			if p.GetProtocol() == straitv1.Protocol_PROTOCOL_UDP {
				continue // the egress carries TCP
			}
			s.Ports = append(s.Ports, discoveryv1.EndpointPort{
				Name: ptr.To(p.GetName()), Port: ptr.To(g.port), Protocol: ptr.To(corev1.ProtocolTCP),
			})
		}
		out = append(out, s)
	}
	slices.SortFunc(out, func(a, b *discoveryv1.EndpointSlice) int { return cmp.Compare(a.Name, b.Name) })
	return out
}

// deleteStale deletes the managed ServiceImports, derived Services and
// EndpointSlices of services not in want.
func (c *Controller) deleteStale(ctx context.Context, want map[federation.ServiceKey]bool) error {
	var errs []error
	sis, err := c.imports.List(managedSelector())
	if err != nil {
		return err
	}
	count := 0
	for _, si := range sis {
		if want[keyOf(si.Namespace, si.Name)] {
			count++
			continue
		}
		err := c.cfg.MCS.MulticlusterV1alpha1().ServiceImports(si.Namespace).Delete(ctx, si.Name, metav1.DeleteOptions{})
		if err != nil && !apierrors.IsNotFound(err) {
			c.metrics.apiErrors.WithLabelValues("delete_service_import").Inc()
			errs = append(errs, fmt.Errorf("kube: delete service import %s/%s: %w", si.Namespace, si.Name, err))
			continue
		}
		c.log.Info("service import deleted", logNamespace, si.Namespace, logName, si.Name)
	}
	c.metrics.imports.Set(float64(count))
	// Owner references let the garbage collector delete the derived
	// objects too; deleting them here does not depend on it.
	svcs, err := c.services.List(managedSelector())
	if err != nil {
		return errors.Join(append(errs, err)...)
	}
	for _, s := range svcs {
		if want[keyOf(s.Namespace, s.Labels[LabelServiceName])] {
			continue
		}
		err := c.cfg.Kube.CoreV1().Services(s.Namespace).Delete(ctx, s.Name, metav1.DeleteOptions{})
		if err != nil && !apierrors.IsNotFound(err) {
			c.metrics.apiErrors.WithLabelValues("delete_service").Inc()
			errs = append(errs, fmt.Errorf("kube: delete derived service %s/%s: %w", s.Namespace, s.Name, err))
		}
	}
	eps, err := c.slices.List(managedSelector())
	if err != nil {
		return errors.Join(append(errs, err)...)
	}
	for _, s := range eps {
		if !want[keyOf(s.Namespace, s.Labels[LabelServiceName])] {
			errs = append(errs, c.deleteSlice(ctx, s))
		}
	}
	return errors.Join(errs...)
}

func (c *Controller) deleteSlice(ctx context.Context, s *discoveryv1.EndpointSlice) error {
	err := c.cfg.Kube.DiscoveryV1().EndpointSlices(s.Namespace).Delete(ctx, s.Name, metav1.DeleteOptions{})
	if err != nil && !apierrors.IsNotFound(err) {
		c.metrics.apiErrors.WithLabelValues("delete_endpoint_slice").Inc()
		return fmt.Errorf("kube: delete endpoint slice %s/%s: %w", s.Namespace, s.Name, err)
	}
	return nil
}

// egressAddrs lists where this cluster's gateway egress is reached: the
// configured address, or the live gateways' egress addresses.
func (c *Controller) egressAddrs(ctx context.Context, snap *federation.Snapshot) []egressAddr {
	var hostports []string
	if c.cfg.GatewayAddress != nil {
		if a := c.cfg.GatewayAddress(); a != "" {
			hostports = append(hostports, a)
		}
	}
	if len(hostports) == 0 {
		for _, g := range snap.Gateways(c.cfg.Cluster) {
			if a := g.GetEgressAddress(); a != "" && !g.GetDraining() {
				hostports = append(hostports, a)
			}
		}
	}
	var out []egressAddr
	for _, hp := range hostports {
		host, portStr, err := net.SplitHostPort(hp)
		port, perr := strconv.ParseUint(portStr, 10, 16)
		if err != nil || perr != nil || port == 0 {
			c.log.Warn("bad gateway egress address", logAddress, hp)
			continue
		}
		ips, err := c.resolve(ctx, host)
		if err != nil {
			c.metrics.apiErrors.WithLabelValues("resolve_gateway").Inc()
			c.log.Warn("cannot resolve the gateway egress address", logAddress, hp, logError, err.Error())
			continue
		}
		for _, ip := range ips {
			// The API server refuses these in an EndpointSlice.
			if ip.IsUnspecified() || ip.IsLoopback() || ip.IsLinkLocalUnicast() || ip.IsMulticast() {
				c.log.Warn("gateway egress address cannot be an endpoint", logAddress, hp)
				continue
			}
			out = append(out, egressAddr{ip: ip.Unmap(), port: int32(port)})
		}
	}
	return out
}

func (c *Controller) resolve(ctx context.Context, host string) ([]netip.Addr, error) {
	if ip, err := netip.ParseAddr(host); err == nil {
		return []netip.Addr{ip}, nil
	}
	return c.cfg.LookupIP(ctx, host)
}

// importPorts are the ServiceImport ports of a global service.
func importPorts(ports []*straitv1.ServicePort) []mcsv1alpha1.ServicePort {
	out := make([]mcsv1alpha1.ServicePort, 0, len(ports))
	for _, p := range ports {
		out = append(out, mcsv1alpha1.ServicePort{Name: p.GetName(), Protocol: protocolOf(p), Port: int32(p.GetPort())})
	}
	return out
}

// derivedPorts are the ports of a derived Service.
func derivedPorts(ports []*straitv1.ServicePort) []corev1.ServicePort {
	out := make([]corev1.ServicePort, 0, len(ports))
	for _, p := range ports {
		out = append(out, corev1.ServicePort{
			Name: p.GetName(), Protocol: protocolOf(p), Port: int32(p.GetPort()),
			TargetPort: intstr.FromInt32(int32(p.GetPort())),
		})
	}
	return out
}

func protocolOf(p *straitv1.ServicePort) corev1.Protocol {
	if p.GetProtocol() == straitv1.Protocol_PROTOCOL_UDP {
		return corev1.ProtocolUDP
	}
	return corev1.ProtocolTCP
}

// ownedBy makes the ServiceImport the controlling owner of a derived object.
func ownedBy(si *mcsv1alpha1.ServiceImport) []metav1.OwnerReference {
	return []metav1.OwnerReference{{
		APIVersion: mcsv1alpha1.SchemeGroupVersion.String(), Kind: "ServiceImport",
		Name: si.Name, UID: si.UID, Controller: ptr.To(true),
	}}
}
