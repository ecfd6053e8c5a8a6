package kubenode

import (
	"context"
	"fmt"
	"os"
	"path/filepath"

	corev1 "k8s.io/api/core/v1"
	storagev1 "k8s.io/api/storage/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// StorageClass is the node's default StorageClass: PersistentVolumeClaims
// without a class (a StatefulSet's, say) bind to the node's local volumes,
// as they bind to the volumes of kind's local-path provisioner.
const StorageClass = "standard"

// addLocalVolumes creates the default StorageClass and count
// PersistentVolumes of size each, directories under the node's state
// directory. The directories are world-writable, since pods of any user
// write there (fsGroup does not apply to host paths), as with kind.
func (n *Node) addLocalVolumes(ctx context.Context, count int, size resource.Quantity) error {
	if count == 0 {
		return nil
	}
	bind := storagev1.VolumeBindingWaitForFirstConsumer
	reclaim := corev1.PersistentVolumeReclaimRetain
	sc := &storagev1.StorageClass{
		ObjectMeta: metav1.ObjectMeta{Name: StorageClass,
			Annotations: map[string]string{"storageclass.kubernetes.io/is-default-class": "true"}},
		Provisioner:       "kubernetes.io/no-provisioner",
		VolumeBindingMode: &bind,
		ReclaimPolicy:     &reclaim,
	}
	if _, err := n.client.StorageV1().StorageClasses().Create(ctx, sc, metav1.CreateOptions{}); err != nil {
		return fmt.Errorf("kubenode: storage class: %w", err)
	}
	hostPathType := corev1.HostPathDirectory
	for i := range count {
		name := fmt.Sprintf("local-%d", i)
		dir := filepath.Join(n.paths.dir, "volumes", name)
		if err := os.MkdirAll(dir, 0o777); err != nil {
			return fmt.Errorf("kubenode: %w", err)
		}
		if err := os.Chmod(dir, 0o777); err != nil { // umask
			return fmt.Errorf("kubenode: %w", err)
		}
		pv := &corev1.PersistentVolume{
			ObjectMeta: metav1.ObjectMeta{Name: name},
			Spec: corev1.PersistentVolumeSpec{
				Capacity:                      corev1.ResourceList{corev1.ResourceStorage: size},
				AccessModes:                   []corev1.PersistentVolumeAccessMode{corev1.ReadWriteOnce},
				PersistentVolumeReclaimPolicy: reclaim,
				StorageClassName:              StorageClass,
				PersistentVolumeSource: corev1.PersistentVolumeSource{
					HostPath: &corev1.HostPathVolumeSource{Path: dir, Type: &hostPathType},
				},
			},
		}
		if _, err := n.client.CoreV1().PersistentVolumes().Create(ctx, pv, metav1.CreateOptions{}); err != nil {
			return fmt.Errorf("kubenode: persistent volume %s: %w", name, err)
		}
	}
	return nil
}
