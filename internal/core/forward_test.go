package core

import (
	"testing"

	"go.etcd.io/raft/v3/raftpb"
	"google.golang.org/protobuf/proto"

	apiv1 "github.com/blixard/blixard/api/v1"
)

// TestForwardable: a peer's MsgProp passes only with proposals a follower
// makes about itself; everything a leader alone proposes, or a proposal
// naming another node, is refused, so a node certificate cannot write
// tokens, rotations or placements into the log.
func TestForwardable(t *testing.T) {
	entry := func(cmd *apiv1.Command) *raftpb.Entry {
		b, err := proto.Marshal(cmd)
		if err != nil {
			t.Fatal(err)
		}
		return &raftpb.Entry{Type: raftpb.EntryType_EntryNormal.Enum(), Data: b}
	}
	reg := func(id, proposer uint64) *apiv1.Command {
		return &apiv1.Command{ProposerId: proposer, Op: &apiv1.Command_RegisterNode{RegisterNode: &apiv1.RegisterNodeCommand{Id: id}}}
	}
	tests := []struct {
		name    string
		entries []*raftpb.Entry
		want    bool
	}{
		{"own registration", []*raftpb.Entry{entry(reg(2, 2))}, true},
		{"own VM report", []*raftpb.Entry{entry(&apiv1.Command{ProposerId: 2, Op: &apiv1.Command_ReportVm{ReportVm: &apiv1.ReportVmCommand{NodeId: 2}}})}, true},
		{"own task report", []*raftpb.Entry{entry(&apiv1.Command{ProposerId: 2, Op: &apiv1.Command_ReportTask{ReportTask: &apiv1.ReportTaskCommand{NodeId: 2}}})}, true},
		{"another node's registration", []*raftpb.Entry{entry(reg(3, 2))}, false},
		{"registration proposed as another", []*raftpb.Entry{entry(reg(2, 3))}, false},
		{"registration with a join token", []*raftpb.Entry{entry(&apiv1.Command{ProposerId: 2, Op: &apiv1.Command_RegisterNode{RegisterNode: &apiv1.RegisterNodeCommand{Id: 2, JoinTokenId: "x"}}})}, false},
		{"another node's VM report", []*raftpb.Entry{entry(&apiv1.Command{ProposerId: 2, Op: &apiv1.Command_ReportVm{ReportVm: &apiv1.ReportVmCommand{NodeId: 1}}})}, false},
		{"a token", []*raftpb.Entry{entry(&apiv1.Command{ProposerId: 2, Op: &apiv1.Command_CreateToken{CreateToken: &apiv1.CreateTokenCommand{}}})}, false},
		{"a CA rotation", []*raftpb.Entry{entry(&apiv1.Command{ProposerId: 2, Op: &apiv1.Command_RotateCa{RotateCa: &apiv1.RotateCaCommand{}}})}, false},
		{"a client write", []*raftpb.Entry{entry(&apiv1.Command{ProposerId: 2, ClientRequestId: "c", Op: &apiv1.Command_CreateVm{CreateVm: &apiv1.CreateVmCommand{}}})}, false},
		{"a placement", []*raftpb.Entry{entry(&apiv1.Command{ProposerId: 2, Op: &apiv1.Command_AssignVm{AssignVm: &apiv1.AssignVmCommand{}}})}, false},
		{"a node status", []*raftpb.Entry{entry(&apiv1.Command{ProposerId: 2, Op: &apiv1.Command_SetNodeStatus{SetNodeStatus: &apiv1.SetNodeStatusCommand{Id: 3}}})}, false},
		{"the cluster's first entry", []*raftpb.Entry{entry(&apiv1.Command{ProposerId: 2, Op: &apiv1.Command_InitCluster{InitCluster: &apiv1.InitClusterCommand{ClusterId: "c"}}})}, false},
		{"good then bad", []*raftpb.Entry{entry(reg(2, 2)), entry(&apiv1.Command{ProposerId: 2, Op: &apiv1.Command_CreateToken{CreateToken: &apiv1.CreateTokenCommand{}}})}, false},
		{"empty entry", []*raftpb.Entry{{Type: raftpb.EntryType_EntryNormal.Enum()}}, false},
		{"undecodable", []*raftpb.Entry{{Type: raftpb.EntryType_EntryNormal.Enum(), Data: []byte{0xff, 0xff}}}, false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			m := &raftpb.Message{Type: raftpb.MessageType_MsgProp.Enum(), From: proto.Uint64(2), To: proto.Uint64(1), Entries: tc.entries}
			if got := forwardable(m); got != tc.want {
				t.Fatalf("forwardable = %v, want %v", got, tc.want)
			}
		})
	}
}
