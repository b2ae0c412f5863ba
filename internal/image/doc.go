// Package image builds and stores Blixard guest images: a kernel that QEMU
// boots directly (an ELF vmlinux with a PVH entry point) and an initramfs
// whose /init is the guest agent (cmd/blixard-agent, package guest), with a
// static busybox for the tasks' shell and tools.
//
// # Building
//
// Build writes vmlinux, initrd.img and image.json into a directory. The
// kernel is the newest Debian kernel in /boot unless one is given (or, with
// none in /boot, the package linux-image-amd64 depends on, fetched with
// apt-get download); a bzImage is unpacked to its vmlinux the way the
// kernel's scripts/extract-vmlinux does (PVH boots in about a third of the
// time a bzImage takes under TCG). The initramfs is an uncompressed cpio
// "newc" archive written here: /init (the agent), /bin/busybox and a
// symlink per applet, /sbin, /usr/bin and /usr/sbin linking to /bin, the
// mount points, /dev/console, /dev/ttyS0 and /dev/null, and a minimal /etc.
// Entries are sorted and their owners and times fixed, so the same inputs
// give the same bytes and the same Digest.
//
// # The store
//
// Ensure, Load and List keep images in <dataDir>/images, content-addressed:
// the files of each image live in sha256-<hex>/ (named by its Digest) and
// each name ("default") is a symlink to one of those directories. Ensure
// builds the default image when it is absent, damaged (its files no longer
// hash to its digest) or built from other files than opts now name (an
// upgraded agent); every other name must exist already.
//
// # Booting an image
//
// Boot Kernel with Initrd and the kernel command line Cmdline, plus TCGArgs
// under TCG (TCGCmdline is both: without the TSC frequency it passes, the
// kernel's TSC calibration fails on a busy host and the boot hangs), with at
// least MinMemoryMiB of memory, the first serial port connected to the host,
// and QEMU's -no-reboot: the agent powers the guest off when told to, which
// ends QEMU with status 0. A task reaches the agent in the initramfs:
// WithFiles appends a second cpio archive holding /blixard/task.json to a
// copy of Initrd.
package image
