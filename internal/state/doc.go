// Package state is Blixard's replicated state machine: the nodes, VMs, tasks
// and cluster records that every node holds in memory and changes only by
// applying the commands of the Raft log, in log order.
//
// Contract:
//
//  1. Apply(index, cmd) is a pure function of the state and the command: no
//     clock (time arrives inside the command as the proposer's timestamp), no
//     randomness, no I/O. Given the same commands at the same indexes, every
//     node reaches the same state, byte for byte.
//  2. Apply validates before it mutates. A rejected command leaves every record
//     untouched (only the applied index moves) and returns a typed *Error that
//     names the field at fault.
//  3. Indexes given to Apply, ApplyMembership and ApplyEmpty strictly increase;
//     anything else is a broken invariant of the caller and panics.
//  4. A command that carries a client request id is remembered with its
//     response (accepted or rejected). A second command with the same id is
//     not applied again: it gets the remembered response. The last
//     MaxRequestRecords ids are kept, the oldest (lowest log index) evicted
//     first.
//  5. Snapshot and Restore round-trip exactly: Snapshot(Restore(Snapshot(s)))
//     equals Snapshot(s) byte for byte. Lists are sorted and protobuf is
//     marshalled deterministically, so no map order leaks into the bytes.
//  6. Queries return copies: callers may keep or change them freely. The
//     exceptions, VmsOn, VmsToPlace, TasksOn and PendingTasks, return the
//     state's own records for the core's node agent to read on every tick
//     without copying; they say so, and nothing may change what they return.
//
// The package imports nothing but the api/v1 messages and the standard
// library's pure packages.
package state
