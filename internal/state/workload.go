package state

import (
	"maps"
	"slices"

	apiv1 "github.com/blixard/blixard/api/v1"
)

// Defaults and bounds of workloads.
const (
	// DefaultImage is the image a VM or task boots when it names none.
	DefaultImage = "default"
	// MaxImages bounds the images one node offers.
	MaxImages = 64
	// MaxDigestLen bounds an image digest ("sha256:" and 64 hex digits).
	MaxDigestLen = 80
	// MaxConsoleTailLen bounds the console tail kept with a failure.
	MaxConsoleTailLen = 2048
	// MaxWorkloadVcpus bounds the vCPUs of one VM or task (a node may have
	// up to MaxVcpus).
	MaxWorkloadVcpus = 64
	// MaxTaskTimeoutMs bounds a task's timeout: 30 days.
	MaxTaskTimeoutMs = 30 * 24 * 3600 * 1000
)

// ImageOf is the image a VM or task spec boots.
func ImageOf(name string) string {
	if name == "" {
		return DefaultImage
	}
	return name
}

func checkImages(field string, imgs []*apiv1.ImageInfo) *Error {
	if len(imgs) > MaxImages {
		return invalid(field, "has %d entries, at most %d allowed", len(imgs), MaxImages)
	}
	for i, img := range imgs {
		if !ValidImageName(img.GetName()) {
			return invalid(field, "image name %q is not valid: 1-%d of a-z, 0-9, '.', '_' and '-', starting with a letter or digit", img.GetName(), MaxNameLen)
		}
		if i > 0 && imgs[i-1].GetName() >= img.GetName() {
			return invalid(field, "must be sorted by name and unique")
		}
		if err := checkText(field+".digest", img.GetDigest(), MaxDigestLen); err != nil {
			return err
		}
		if img.GetMinMemoryMib() > MaxMemoryMiB {
			return invalid(field+".min_memory_mib", "must be at most %d", MaxMemoryMiB)
		}
	}
	return nil
}

// nodeImage returns the image called name on node n, if n offers it.
func nodeImage(n *apiv1.Node, name string) (*apiv1.ImageInfo, bool) {
	i, ok := slices.BinarySearchFunc(n.GetImages(), name, func(img *apiv1.ImageInfo, name string) int {
		switch {
		case img.GetName() < name:
			return -1
		case img.GetName() > name:
			return 1
		}
		return 0
	})
	if !ok {
		return nil, false
	}
	return n.GetImages()[i], true
}

// checkPlaceable refuses a workload that no node of the cluster could ever
// hold: an image no node offers, less memory than the image needs, or more
// than any one node has in all. One that merely does not fit now is
// accepted and waits.
// imageField, memoryField and field name the spec's image, memory and
// whole resource request in errors.
func (s *State) checkPlaceable(imageField, memoryField, field, image string, need *apiv1.Resources) *Error {
	image = ImageOf(image)
	var offered, big bool
	minMemory := uint64(0)
	for _, id := range s.nodeIDs() {
		n := s.nodes[id]
		if n.GetStatus() == apiv1.NodeStatus_NODE_STATUS_LEFT {
			continue
		}
		img, ok := nodeImage(n, image)
		if !ok {
			continue
		}
		if !offered || img.GetMinMemoryMib() < minMemory {
			minMemory = img.GetMinMemoryMib()
		}
		offered = true
		c := n.GetCapacity()
		if need.GetVcpus() <= c.GetVcpus() && need.GetMemoryMib() <= c.GetMemoryMib() &&
			(need.GetDiskMib() == 0 || need.GetDiskMib() <= c.GetDiskMib()) && hasFeatures(c, need.GetFeatures()) &&
			need.GetMemoryMib() >= img.GetMinMemoryMib() {
			big = true
		}
	}
	switch {
	case !offered:
		return notFound(imageField, "no node of the cluster offers image %q", image)
	case need.GetMemoryMib() < minMemory:
		return invalid(memoryField, "%d MiB is below the %d MiB image %q needs", need.GetMemoryMib(), minMemory, image)
	case !big:
		return exhausted(field, "no node of the cluster could ever hold %d vCPUs and %d MiB with image %q", need.GetVcpus(), need.GetMemoryMib(), image)
	}
	return nil
}

func hasFeatures(c *apiv1.Resources, want []string) bool {
	for _, f := range want {
		if !slices.Contains(c.GetFeatures(), f) {
			return false
		}
	}
	return true
}

// CanPlace reports why node id cannot take a workload of image needing
// need now, or nil: it must be ready and not draining, offer the image (with
// no more than need's memory as its minimum) and have the room free.
func (s *State) CanPlace(id uint64, image string, need *apiv1.Resources) error {
	return s.CanPlaceWith(id, image, need, nil)
}

// CanPlaceWith is CanPlace on a node that also holds reserved: what a
// placer has proposed for it and the state does not show yet.
func (s *State) CanPlaceWith(id uint64, image string, need, reserved *apiv1.Resources) error {
	if err := s.canPlace(id, image, need, reserved); err != nil {
		return err
	}
	return nil
}

func (s *State) canPlace(id uint64, image string, need, reserved *apiv1.Resources) *Error {
	if err := s.nodeSchedulable("node_id", id); err != nil {
		return err
	}
	if err := checkNodeImage(s.nodes[id], image, need.GetMemoryMib()); err != nil {
		return err
	}
	return s.checkFitsWith("node_id", id, need, reserved)
}

// checkNodeImage: node n must offer image, and memoryMiB must be enough
// for n's build of it.
func checkNodeImage(n *apiv1.Node, image string, memoryMiB uint64) *Error {
	img, ok := nodeImage(n, ImageOf(image))
	if !ok {
		return precondition("node_id", "node %d does not offer image %q", n.GetId(), ImageOf(image))
	}
	if memoryMiB < img.GetMinMemoryMib() {
		return precondition("node_id", "node %d's image %q needs %d MiB, the workload has %d", n.GetId(), ImageOf(image), img.GetMinMemoryMib(), memoryMiB)
	}
	return nil
}

// VmNeeds is what a VM of spec holds on its node.
func VmNeeds(spec *apiv1.VmSpec) *apiv1.Resources {
	return &apiv1.Resources{Vcpus: spec.GetVcpus(), MemoryMib: spec.GetMemoryMib()}
}

func (s *State) nodeIDs() []uint64 {
	return slices.Sorted(maps.Keys(s.nodes))
}

// ValidImageName reports whether name can name an image.
func ValidImageName(name string) bool {
	if name == "" || len(name) > MaxNameLen {
		return false
	}
	for i := 0; i < len(name); i++ {
		c := name[i]
		switch {
		case c >= 'a' && c <= 'z', c >= '0' && c <= '9':
		case (c == '.' || c == '_' || c == '-') && i > 0:
		default:
			return false
		}
	}
	return true
}
