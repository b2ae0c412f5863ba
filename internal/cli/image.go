package cli

import (
	"errors"
	"fmt"
	"path/filepath"
	"strings"

	"github.com/spf13/cobra"

	"github.com/blixard/blixard/internal/image"
)

// The image commands are local: they build and read guest images on this
// machine and reach no cluster, so they take no globalFlags. Both live in
// this one file (the brief that added them allowed no other).

func newImageCommand() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "image",
		Short: "Build and list guest images",
		Long: `Build and list guest images on this machine. A guest image is a kernel that
QEMU boots directly (a PVH vmlinux) and an initramfs whose init is the
Blixard guest agent, with busybox for tasks. Each node builds the "default"
image the first time it needs it and keeps it under its data directory.`,
		Args: noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error { return cmd.Help() },
	}
	cmd.AddCommand(newImageBuildCommand(), newImageListCommand())
	return cmd
}

func newImageBuildCommand() *cobra.Command {
	var (
		opts image.BuildOptions
		out  string
	)
	cmd := &cobra.Command{
		Use:   "build",
		Short: "Build the default guest image into a directory",
		Long: `Build the default guest image into --out: vmlinux (the kernel, unpacked from a
bzImage if need be), initrd.img (the agent as /init, busybox and its applets)
and image.json. The same inputs give the same files and digest.

The kernel is --kernel, else the newest /boot/vmlinuz-*-amd64, else the one
Debian's linux-image-amd64 package depends on, fetched with apt-get download.
The agent is --agent, else $BLIXARD_AGENT, else blixard-agent beside this
blixard binary, else blixard-agent in PATH. It shows each step on stderr as
it is done (agent found, kernel found, kernel unpacked, initramfs packed,
image written: one line rewritten in place on a terminal, else a line per
step; nothing with -q), then prints the image's name, digest, files and the
least memory it boots with.`,
		Example: `  blixard image build
  blixard image build --out /tmp/img --kernel /boot/vmlinuz-6.1.0-56-amd64 --agent ./bin/blixard-agent`,
		Args: exactArgs(),
		RunE: func(cmd *cobra.Command, _ []string) error {
			if out == "" {
				return usageErrorf("--out: give a directory")
			}
			p := progressFor(cmd).start("image build")
			opts.Progress = p.Update
			img, err := image.Build(cmd.Context(), out, opts)
			p.Done()
			if err != nil {
				return err
			}
			w := cmd.OutOrStdout()
			tw := newTable(w)
			row(tw, "name:", img.Name)
			row(tw, "digest:", img.Digest)
			row(tw, "kernel:", img.Kernel+" ("+orDash(img.KernelRelease)+")")
			row(tw, "initrd:", img.Initrd)
			row(tw, "min memory:", mibText(img.MinMemoryMiB))
			return tw.Flush()
		},
	}
	f := cmd.Flags()
	f.StringVar(&out, "out", "blixard-image", "`directory` to write the image to")
	f.StringVar(&opts.Kernel, "kernel", "", "kernel `file`: a bzImage (vmlinuz) or an ELF vmlinux (default: the newest /boot/vmlinuz-*-amd64)")
	f.StringVar(&opts.Agent, "agent", "", "blixard-agent `binary` to put in the image as /init (default: found as described above)")
	f.StringVar(&opts.Busybox, "busybox", image.DefaultBusybox, "static busybox `binary` for the image")
	return cmd
}

func newImageListCommand() *cobra.Command {
	var dataDir string
	cmd := &cobra.Command{
		Use:   "list",
		Short: "List the guest images in a node's data directory",
		Long: `List the guest images that a node keeps under its data directory
(<data-dir>/images): each name with its digest, kernel, least memory and
directory.`,
		Example: `  blixard image list --data-dir ./data/n1`,
		Args:    exactArgs(),
		RunE: func(cmd *cobra.Command, _ []string) error {
			images, listErr := image.List(dataDir)
			w := cmd.OutOrStdout()
			if len(images) == 0 && listErr == nil {
				_, err := fmt.Fprintf(w, "no images in %s\n", filepath.Join(dataDir, "images"))
				return err
			}
			if len(images) > 0 {
				tw := newTable(w)
				row(tw, "NAME", "DIGEST", "KERNEL", "MIN MEMORY", "DIR")
				for _, img := range images {
					row(tw, img.Name, shortDigest(img.Digest), orDash(img.KernelRelease), mibText(img.MinMemoryMiB), img.Dir)
				}
				if err := tw.Flush(); err != nil {
					return err
				}
			}
			if listErr != nil {
				return errors.New(oneLine(listErr.Error()))
			}
			return nil
		},
	}
	cmd.Flags().StringVar(&dataDir, "data-dir", "", "the node's data `directory` (required)")
	_ = cmd.MarkFlagRequired("data-dir")
	return cmd
}

// shortDigest shows a digest as its algorithm and first 12 hex digits, as
// the directory name beside it carries the whole.
func shortDigest(d string) string {
	alg, hex, ok := strings.Cut(d, ":")
	if !ok || len(hex) <= 12 {
		return d
	}
	return alg + ":" + hex[:12]
}
