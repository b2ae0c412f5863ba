// Package wire is the framed protocol that the in-VM agent and the host
// speak over the VM's serial console: one codec for both sides.
//
// The console is shared with the kernel and anything else the guest prints,
// so a frame is one line of text that cannot be mistaken for other output:
//
//	\x01BLX1 <kind> <base64 body> <crc32 hex>\n
//
// The body is JSON. A line that carries no valid frame — no marker, a bad
// checksum, a body that does not decode — is console text, kept as the VM's
// log. A frame may start in the middle of a line (the kernel printed
// something first): the text before the marker is console text.
package wire
