/**
 * The programs the box builder needs before it starts, with the Debian package of each (as in
 * `.ci/packages.tsv`, which tests/system_packages_test.ts checks this against).
 *
 * @module
 */

/** Program -> Debian 12 package. */
export const BOX_BUILDER_PROGRAMS: Readonly<Record<string, string>> = {
  debootstrap: "debootstrap",
  "qemu-img": "qemu-utils",
  extlinux: "extlinux",
  sfdisk: "fdisk",
  "mkfs.ext4": "e2fsprogs",
  chroot: "coreutils",
};
