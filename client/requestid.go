package client

import (
	"crypto/rand"
	"encoding/hex"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
)

// writeRequest is a mutating request: one that carries a client request id.
type writeRequest interface {
	proto.Message
	GetClientRequestId() string
}

// withRequestID returns req if it has a client request id, or else a copy of
// req (an empty message if req is nil) with a fresh one.
func withRequestID[M writeRequest](req M) M {
	if req.GetClientRequestId() != "" {
		return req
	}
	m := req.ProtoReflect()
	var out protoreflect.Message
	if m.IsValid() {
		out = proto.Clone(req).ProtoReflect()
	} else {
		out = m.Type().New()
	}
	fd := out.Descriptor().Fields().ByName("client_request_id")
	if fd == nil || fd.Kind() != protoreflect.StringKind {
		panic("client: " + string(out.Descriptor().FullName()) + " has no string field client_request_id")
	}
	out.Set(fd, protoreflect.ValueOfString(NewRequestID()))
	return out.Interface().(M)
}

// NewRequestID returns a random client request id in the form of a version 4
// UUID ("6f1c0e0a-8a4b-4c39-9a58-2f0d6a1b9e73"), from crypto/rand.
func NewRequestID() string {
	var b [16]byte
	_, _ = rand.Read(b[:])  // never fails: crypto/rand aborts the program instead
	b[6] = b[6]&0x0f | 0x40 // version 4
	b[8] = b[8]&0x3f | 0x80 // RFC 4122 variant
	var s [36]byte
	hex.Encode(s[0:8], b[0:4])
	s[8] = '-'
	hex.Encode(s[9:13], b[4:6])
	s[13] = '-'
	hex.Encode(s[14:18], b[6:8])
	s[18] = '-'
	hex.Encode(s[19:23], b[8:10])
	s[23] = '-'
	hex.Encode(s[24:], b[10:])
	return string(s[:])
}
