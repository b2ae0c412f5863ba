package sched

import (
	"cmp"
	"maps"
	"slices"
	"strconv"
	"strings"
	"unicode/utf8"

	"github.com/blixard/blixard/internal/state"
)

// Unplaceable is Place's answer when no node can take a request.
type Unplaceable struct {
	// Reason says why, for people: which checks the nodes failed and how
	// many failed each, the most common first. At most MaxReasonLen bytes,
	// and the same for the same view and request.
	Reason string
}

func (e *Unplaceable) Error() string { return e.Reason }

// MaxReasonLen bounds Unplaceable.Reason in bytes: it is stored in the
// workload's record (PlacementFailed) and shown by the CLI.
const MaxReasonLen = 200

// reason is the first check a node fails for a request. The values are in
// the order of the checks, which is also the order in which equally common
// reasons are listed.
type reason uint8

const (
	fits reason = iota
	reasonLeft
	reasonDown
	reasonDisconnected
	reasonNotReady
	reasonDraining
	reasonNoImage
	reasonImageMemory
	reasonLabels
	reasonGroup
	reasonVcpus
	reasonMemory
	reasonDisk
	reasonFeatures
	numReasons
)

// explain words the tally of every node's first failed check (total nodes
// in all, none feasible) as an Unplaceable reason.
func explain(r *Request, tally *[numReasons]int, total int) string {
	var order []reason
	for why := fits + 1; why < numReasons; why++ {
		if tally[why] > 0 {
			order = append(order, why)
		}
	}
	// Most common first; ties keep the order of the checks (stable sort).
	slices.SortStableFunc(order, func(a, b reason) int { return cmp.Compare(tally[b], tally[a]) })
	if len(order) == 1 {
		return bound(everyNode(r, order[0], total))
	}
	var b strings.Builder
	b.WriteString("no node fits ")
	b.WriteString(needText(r))
	b.WriteString(": ")
	for i, why := range order {
		if i > 0 {
			b.WriteString(", ")
		}
		n := tally[why]
		b.WriteString(strconv.Itoa(n))
		if i == 0 {
			b.WriteString(plural(n, " node ", " nodes "))
		} else {
			b.WriteByte(' ')
		}
		b.WriteString(phrase(r, why, n == 1))
	}
	return bound(b.String())
}

// phrase is what one node (one) or several nodes fail for reason why: the
// predicate of "3 nodes ...".
func phrase(r *Request, why reason, one bool) string {
	verb := func(singular, pluralForm string) string {
		if one {
			return singular
		}
		return pluralForm
	}
	switch why {
	case reasonLeft:
		return verb("has", "have") + " left"
	case reasonDown:
		return verb("is", "are") + " down"
	case reasonDisconnected:
		return verb("is", "are") + " disconnected"
	case reasonNotReady:
		return verb("is", "are") + " not ready"
	case reasonDraining:
		return verb("is", "are") + " draining"
	case reasonNoImage:
		return verb("does", "do") + " not offer image " + imageText(r)
	case reasonImageMemory:
		return verb("has", "have") + " image " + imageText(r) + " needing more than " + mibText(r.Need.GetMemoryMib())
	case reasonLabels:
		return verb("does", "do") + " not carry " + constraintsText(r)
	case reasonGroup:
		return "already " + verb("runs", "run") + " a VM of group " + strconv.Quote(r.Group) + groupHard(r)
	case reasonVcpus:
		return verb("has", "have") + " too few vCPUs free"
	case reasonMemory:
		return verb("has", "have") + " too little memory free"
	case reasonDisk:
		return verb("has", "have") + " too little disk free"
	case reasonFeatures:
		return verb("lacks", "lack") + " " + featuresText(r)
	}
	panic("sched: no phrase for reason " + strconv.Itoa(int(why)))
}

// everyNode words reason why when it is the one every node fails.
func everyNode(r *Request, why reason, total int) string {
	switch why {
	case reasonLeft, reasonDown, reasonDisconnected, reasonNotReady, reasonDraining:
		if total == 1 {
			return "the only node " + phrase(r, why, true)
		}
		return "all " + strconv.Itoa(total) + " nodes " + phrase(r, why, false)
	case reasonNoImage:
		return "no node offers image " + imageText(r)
	case reasonImageMemory:
		return "image " + imageText(r) + " needs more than " + mibText(r.Need.GetMemoryMib()) + " on every node"
	case reasonLabels:
		return "no node carries " + constraintsText(r)
	case reasonGroup:
		return "every node already runs a VM of anti-affinity group " + strconv.Quote(r.Group) + groupHard(r)
	case reasonVcpus:
		return "no node has " + vcpusText(r.Need.GetVcpus()) + " free"
	case reasonMemory:
		return "no node has " + mibText(r.Need.GetMemoryMib()) + " of memory free"
	case reasonDisk:
		return "no node has " + mibText(r.Need.GetDiskMib()) + " of disk free"
	case reasonFeatures:
		return "no node has " + featuresText(r)
	}
	panic("sched: no phrase for reason " + strconv.Itoa(int(why)))
}

// needText is what r asks for: "2 vCPUs and 8 GiB", with its disk if any.
func needText(r *Request) string {
	s := vcpusText(r.Need.GetVcpus())
	if d := r.Need.GetDiskMib(); d > 0 {
		return s + ", " + mibText(r.Need.GetMemoryMib()) + " and " + mibText(d) + " of disk"
	}
	return s + " and " + mibText(r.Need.GetMemoryMib())
}

// groupHard qualifies the group reason of a soft request: only a hard VM
// of the group keeps it off a node.
func groupHard(r *Request) string {
	if r.GroupSoft {
		return " with hard anti-affinity"
	}
	return ""
}

func vcpusText(n uint32) string {
	return strconv.FormatUint(uint64(n), 10) + plural(int(n), " vCPU", " vCPUs")
}

// mibText is m MiB, in GiB when that is a whole number.
func mibText(m uint64) string {
	if m >= 1024 && m%1024 == 0 {
		return strconv.FormatUint(m/1024, 10) + " GiB"
	}
	return strconv.FormatUint(m, 10) + " MiB"
}

func imageText(r *Request) string { return strconv.Quote(state.ImageOf(r.Image)) }

// constraintsText is r's constraints as "k=v", several sorted by key.
func constraintsText(r *Request) string {
	keys := slices.Sorted(maps.Keys(r.Constraints))
	if len(keys) == 1 {
		return keys[0] + "=" + r.Constraints[keys[0]]
	}
	parts := make([]string, len(keys))
	for i, k := range keys {
		parts[i] = k + "=" + r.Constraints[k]
	}
	return "all of " + strings.Join(parts, ",")
}

// featuresText is "feature kvm", or "all of features kvm,gpu".
func featuresText(r *Request) string {
	fs := r.Need.GetFeatures()
	if len(fs) == 1 {
		return "feature " + fs[0]
	}
	return "all of features " + strings.Join(fs, ",")
}

func plural(n int, one, many string) string {
	if n == 1 {
		return one
	}
	return many
}

// bound cuts s to MaxReasonLen bytes, on a rune boundary, marking the cut.
func bound(s string) string {
	if len(s) <= MaxReasonLen {
		return s
	}
	const mark = "..."
	i := MaxReasonLen - len(mark)
	for i > 0 && !utf8.RuneStart(s[i]) {
		i--
	}
	return s[:i] + mark
}
