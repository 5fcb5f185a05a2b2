/**
 * The offline box builder behind `deno task vm:box`.
 *
 * @module
 */
import { createHash } from "node:crypto";
import { VmError } from "../errors.ts";
import { hasProgram, runCommand } from "../_command.ts";
import { DEFAULT_BOX, defaultCacheDir, DENO_VERSION, VM_DIR } from "../_paths.ts";
import { boxMetadata, boxVagrantfile, debianMirror } from "./box_files.ts";
import { INSECURE_PUBLIC_KEY } from "./insecure_key.ts";
import { BOX_BUILDER_PROGRAMS } from "./_programs.ts";
import { vagrantHasBox } from "../_locate.ts";

/** Options of {@linkcode buildBox}. */
export interface BuildBoxOptions {
  /** Box name for `vagrant box add`. @default {"triad/debian12"} */
  name?: string;
  /** Cache directory (built boxes, the debootstrap stage). @default {"~/.cache/triad/vm"} */
  cacheDir?: string;
  /** Debian mirror URI. @default {the one apt is configured with} */
  mirror?: string;
  /** The Deno binary copied into the guest. @default {Deno.execPath()} */
  denoBinary?: string;
  /** Disk size in GiB. @default {16} */
  diskSizeGiB?: number;
  /** Add the box to Vagrant. @default {true} */
  add?: boolean;
  /** Rebuild even when a cached box exists. @default {false} */
  force?: boolean;
  /** Progress lines. */
  log?: (line: string) => void;
  /** Aborts the build (mounts and temporary files are still cleaned up). */
  signal?: AbortSignal;
}

/** A built box. */
export interface BuiltBox {
  /** The Vagrant box name. */
  name: string;
  /** The `.box` file. */
  path: string;
  /** The cache key: a hash of everything the box is built from. */
  key: string;
  /** True when nothing had to be built. */
  cached: boolean;
  /** True when the box is registered with Vagrant. */
  added: boolean;
}

const SUITE = "bookworm";
// Bump when the image layout changes in a way the inputs below do not capture.
const BUILDER_VERSION = "1";
const BASE_PACKAGES = [
  "systemd-sysv",
  "udev",
  "dbus",
  "kmod",
  "linux-image-amd64",
  "openssh-server",
  "sudo",
  "rsync",
  "iproute2",
  "procps",
  "ca-certificates",
];
const ROOT_LABEL = "triad-root";
const PARTITION_OFFSET = 1024 * 1024;
const KEEP_BOXES = 3;

async function hashFiles(parts: string[]): Promise<string> {
  const hash = createHash("sha256");
  for (const part of parts) hash.update(part).update("\0");
  return await Promise.resolve(hash.digest("hex").slice(0, 16));
}

async function exists(path: string): Promise<boolean> {
  try {
    await Deno.lstat(path);
    return true;
  } catch {
    return false;
  }
}

/** Reads the mirror from apt's configuration on this host. */
export async function hostDebianMirror(): Promise<string> {
  const texts: string[] = [];
  const read = async (path: string) => {
    try {
      texts.push(await Deno.readTextFile(path));
    } catch { /* absent */ }
  };
  await read("/etc/apt/sources.list");
  try {
    const names = [];
    for await (const entry of Deno.readDir("/etc/apt/sources.list.d")) {
      if (/\.(sources|list)$/.test(entry.name)) names.push(entry.name);
    }
    for (const name of names.sort()) await read(`/etc/apt/sources.list.d/${name}`);
  } catch { /* absent */ }
  const mirror = debianMirror(texts, SUITE);
  if (!mirror) {
    throw new VmError(
      `No Debian ${SUITE} mirror in /etc/apt/sources.list(.d): set TRIAD_VM_MIRROR`,
      { code: "bad_argument" },
    );
  }
  return mirror;
}

/**
 * Builds (or finds in the cache) the triad test box: Debian 12 debootstrapped from the host's
 * mirror with `linux-image-amd64` (BTF kernel), a `vagrant` user with the well-known insecure key
 * and passwordless sudo, openssh, DHCP on the first NIC, and `vm/provision/provision.sh` run at
 * build time (Deno copied in from the host), so the guest needs no network at test time. Writes a
 * `.box` (qcow2 `box.img`, `metadata.json`, `Vagrantfile`) and adds it with `vagrant box add`.
 * A second call with the same inputs does nothing.
 *
 * Needs root (debootstrap, chroot, a loop mount for extlinux), debootstrap, qemu-img, extlinux
 * and syslinux-common.
 *
 * @param options Name, cache directory, mirror.
 * @returns The box.
 *
 * @example
 * ```ts ignore
 * import { buildBox } from "@triad/vm";
 * const box = await buildBox({ log: console.log });
 * console.log(box.path, box.cached);
 * ```
 */
export async function buildBox(options: BuildBoxOptions = {}): Promise<BuiltBox> {
  const name = options.name ?? DEFAULT_BOX;
  const cacheDir = options.cacheDir ?? defaultCacheDir();
  const diskSizeGiB = options.diskSizeGiB ?? 16;
  const log = options.log ?? (() => {});
  const denoBinary = options.denoBinary ?? Deno.execPath();
  const add = options.add ?? true;

  const provision = await Deno.readTextFile(`${VM_DIR}/provision/provision.sh`);
  const packages = await Deno.readTextFile(`${VM_DIR}/provision/packages.txt`);
  const baseKey = await hashFiles([BUILDER_VERSION, SUITE, ...BASE_PACKAGES]);
  const key = await hashFiles([
    baseKey,
    provision,
    packages,
    DENO_VERSION,
    String(diskSizeGiB),
    await Deno.readTextFile(new URL("./build_box.ts", import.meta.url)),
  ]);
  const safeName = name.replace(/[^A-Za-z0-9_.-]+/g, "-");
  const boxPath = `${cacheDir}/${safeName}-${key}.box`;
  const addedMarker = `${cacheDir}/${safeName}.added`;

  if (!options.force && await exists(boxPath)) {
    let added = false;
    if (add) {
      const marker = await Deno.readTextFile(addedMarker).catch(() => "");
      if (marker.trim() === key && await vagrantHasBox(name, "libvirt")) {
        log(`box ${name} is up to date (${boxPath})`);
        return { name, path: boxPath, key, cached: true, added: true };
      }
      await addBox(name, boxPath, addedMarker, key, log);
      added = true;
    }
    return { name, path: boxPath, key, cached: true, added };
  }

  const missingTools = Object.keys(BOX_BUILDER_PROGRAMS).filter((tool) => !hasProgram(tool));
  if (missingTools.length > 0) {
    const packages = [...new Set(missingTools.map((tool) => BOX_BUILDER_PROGRAMS[tool]))];
    throw new VmError(
      `The box builder needs ${missingTools.join(", ")}: apt-get install ${packages.join(" ")}`,
      { code: "missing_tool" },
    );
  }
  if (Deno.uid() !== 0) {
    throw new VmError("The box builder needs root (debootstrap, chroot, loop mount)", {
      code: "bad_argument",
    });
  }
  const denoVersion = (await runCommand(denoBinary, ["--version"])).stdout.split(/\s+/)[1];
  if (denoVersion !== DENO_VERSION) {
    throw new VmError(
      `The guest needs Deno ${DENO_VERSION}, but ${denoBinary} is ${denoVersion}`,
      { code: "bad_argument" },
    );
  }
  const mirror = options.mirror ?? Deno.env.get("TRIAD_VM_MIRROR") ?? await hostDebianMirror();
  await Deno.mkdir(cacheDir, { recursive: true });

  // one build at a time per cache (a second waits, then finds the box cached)
  using lock = await Deno.open(`${cacheDir}/.lock`, { create: true, write: true });
  await lock.lock(true);
  if (!options.force && await exists(boxPath)) {
    return await buildBox({ ...options, force: false });
  }
  // a build killed outright leaves its directory (and maybe its chroot mounts): remove safely
  for await (const entry of Deno.readDir(cacheDir)) {
    if (entry.isDirectory && entry.name.startsWith("build-")) {
      await removeBuildDir(`${cacheDir}/${entry.name}`);
    }
  }
  const started = Date.now();
  const base = await debootstrapStage(cacheDir, baseKey, mirror, log, options.signal);
  const work = await Deno.makeTempDir({ dir: cacheDir, prefix: "build-" });
  try {
    const rootfs = `${work}/rootfs`;
    log(`copying the base system to ${rootfs}`);
    await runCommand("cp", ["-a", base, rootfs]);
    await provisionRoot(rootfs, { mirror, denoBinary, log, signal: options.signal });
    const kernel = await configureRoot(rootfs);
    log(`kernel ${kernel.version}; assembling the disk`);
    const raw = `${work}/disk.raw`;
    await assembleDisk(rootfs, raw, diskSizeGiB, work);
    await removeBuildDir(rootfs);
    const boxDir = `${work}/box`;
    await Deno.mkdir(boxDir);
    await runCommand("qemu-img", ["convert", "-f", "raw", "-O", "qcow2", raw, `${boxDir}/box.img`]);
    await Deno.remove(raw);
    await Deno.writeTextFile(
      `${boxDir}/metadata.json`,
      JSON.stringify(boxMetadata(diskSizeGiB), null, 2) + "\n",
    );
    await Deno.writeTextFile(`${boxDir}/Vagrantfile`, boxVagrantfile({ memoryMiB: 2048, cpus: 2 }));
    const partial = `${boxPath}.partial`;
    await runCommand("tar", [
      "-cf",
      partial,
      "-C",
      boxDir,
      "metadata.json",
      "Vagrantfile",
      "box.img",
    ]);
    await Deno.rename(partial, boxPath);
    log(`built ${boxPath} in ${Math.round((Date.now() - started) / 1000)} s`);
  } finally {
    await removeBuildDir(work);
  }
  // keep the newest few boxes of this name: other checkouts sharing the cache may still use theirs
  const boxes: { path: string; mtime: number }[] = [];
  for await (const entry of Deno.readDir(cacheDir)) {
    if (entry.name.startsWith(`${safeName}-`) && entry.name.endsWith(".box")) {
      const path = `${cacheDir}/${entry.name}`;
      boxes.push({ path, mtime: (await Deno.stat(path)).mtime?.getTime() ?? 0 });
    }
  }
  boxes.sort((a, b) => b.mtime - a.mtime);
  for (const { path } of boxes.slice(KEEP_BOXES)) if (path !== boxPath) await Deno.remove(path);
  if (add) await addBox(name, boxPath, addedMarker, key, log);
  return { name, path: boxPath, key, cached: false, added: add };
}

async function addBox(
  name: string,
  path: string,
  marker: string,
  key: string,
  log: (line: string) => void,
): Promise<void> {
  log(`vagrant box add --force --name ${name} ${path}`);
  await runCommand("vagrant", ["box", "add", "--force", "--name", name, path]);
  await Deno.writeTextFile(marker, `${key}\n`);
}

async function debootstrapStage(
  cacheDir: string,
  key: string,
  mirror: string,
  log: (line: string) => void,
  signal: AbortSignal | undefined,
): Promise<string> {
  const dir = `${cacheDir}/debootstrap-${key}`;
  if (await exists(`${dir}/.complete`)) return dir;
  await removeBuildDir(dir);
  log(`debootstrap ${SUITE} from the host's mirror into ${dir}`);
  await runCommand(
    "debootstrap",
    ["--variant=minbase", `--include=${BASE_PACKAGES.join(",")}`, SUITE, dir, mirror],
    { timeoutMs: 30 * 60_000, ...(signal ? { signal } : {}) },
  ).catch(async (error) => {
    await removeBuildDir(dir);
    throw error;
  });
  await Deno.writeTextFile(`${dir}/.complete`, "");
  return dir;
}

async function mountsUnder(dir: string): Promise<string[]> {
  return (await Deno.readTextFile("/proc/self/mounts")).split("\n")
    .map((line) => (line.split(" ")[1] ?? "").replace(/\\040/g, " "))
    .filter((point) => point === dir || point.startsWith(`${dir}/`))
    .sort((a, b) => b.length - a.length);
}

/** Unmounts every mount point under a directory, deepest first; throws if any is left. */
async function unmountUnder(dir: string): Promise<void> {
  for (const point of await mountsUnder(dir)) {
    await runCommand("umount", ["-l", point], { allowFailure: true });
  }
  const left = await mountsUnder(dir);
  if (left.length > 0) {
    throw new VmError(`Cannot unmount ${left.join(", ")}`, { code: "cleanup_failed" });
  }
}

/**
 * Removes a build directory, but only once nothing is mounted inside: a bind mount of the host's
 * /dev or /sys left in a chroot must never be deleted through.
 */
async function removeBuildDir(dir: string): Promise<void> {
  await unmountUnder(dir);
  await Deno.remove(dir, { recursive: true }).catch((error) => {
    if (!(error instanceof Deno.errors.NotFound)) throw error;
  });
}

async function provisionRoot(
  rootfs: string,
  options: {
    mirror: string;
    denoBinary: string;
    log: (line: string) => void;
    signal: AbortSignal | undefined;
  },
): Promise<void> {
  await Deno.writeTextFile(
    `${rootfs}/etc/apt/sources.list`,
    `deb ${options.mirror} ${SUITE} main\ndeb ${options.mirror} ${SUITE}-updates main\n`,
  );
  await Deno.copyFile("/etc/resolv.conf", `${rootfs}/etc/resolv.conf`).catch(() => {});
  await Deno.copyFile(options.denoBinary, `${rootfs}/usr/local/bin/deno`);
  await Deno.chmod(`${rootfs}/usr/local/bin/deno`, 0o755);
  await Deno.mkdir(`${rootfs}/tmp/provision`, { recursive: true });
  for (const file of ["provision.sh", "packages.txt"]) {
    await Deno.copyFile(`${VM_DIR}/provision/${file}`, `${rootfs}/tmp/provision/${file}`);
  }
  try {
    await runCommand("mount", ["-t", "proc", "proc", `${rootfs}/proc`]);
    await runCommand("mount", ["--rbind", "/sys", `${rootfs}/sys`]);
    await runCommand("mount", ["--make-rslave", `${rootfs}/sys`]);
    await runCommand("mount", ["--bind", "/dev", `${rootfs}/dev`]);
    await runCommand("mount", ["--bind", "/dev/pts", `${rootfs}/dev/pts`]);
    options.log("provisioning inside the image (vm/provision/provision.sh)");
    await runCommand("chroot", [rootfs, "/bin/bash", "/tmp/provision/provision.sh"], {
      env: {
        TRIAD_PROVISION_STAGE: "image",
        TRIAD_DENO_VERSION: DENO_VERSION,
        PATH: "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
        LC_ALL: "C",
      },
      timeoutMs: 30 * 60_000,
      echo: true,
      ...(options.signal ? { signal: options.signal } : {}),
    });
  } finally {
    await unmountUnder(`${rootfs}`);
  }
  await Deno.remove(`${rootfs}/tmp/provision`, { recursive: true });
}

interface Kernel {
  version: string;
  vmlinuz: string;
  initrd: string;
}

async function configureRoot(rootfs: string): Promise<Kernel> {
  const write = (path: string, text: string) => Deno.writeTextFile(`${rootfs}${path}`, text);
  await write("/etc/hostname", "triad\n");
  await write(
    "/etc/hosts",
    "127.0.0.1\tlocalhost\n127.0.1.1\ttriad\n::1\tlocalhost ip6-localhost\n",
  );
  await write("/etc/fstab", `LABEL=${ROOT_LABEL} / ext4 errors=remount-ro 0 1\n`);
  // provision.sh appended the tracefs/bpffs lines to the fstab it saw; keep them
  await runCommand("chroot", [
    rootfs,
    "/bin/bash",
    "-c",
    [
      "grep -q tracefs /etc/fstab || echo 'tracefs /sys/kernel/tracing tracefs defaults,nofail 0 0' >>/etc/fstab",
      "grep -q bpffs /etc/fstab || echo 'bpffs /sys/fs/bpf bpf defaults,nofail 0 0' >>/etc/fstab",
      "id vagrant >/dev/null 2>&1 || useradd --create-home --shell /bin/bash vagrant",
      "echo vagrant:vagrant | chpasswd",
      "echo root:vagrant | chpasswd",
      "install -d -m 700 -o vagrant -g vagrant /home/vagrant/.ssh",
    ].join(" && "),
  ], { env: { LC_ALL: "C" } });
  await write("/home/vagrant/.ssh/authorized_keys", `${INSECURE_PUBLIC_KEY}\n`);
  await runCommand("chroot", [
    rootfs,
    "chown",
    "vagrant:vagrant",
    "/home/vagrant/.ssh/authorized_keys",
  ]);
  await Deno.chmod(`${rootfs}/home/vagrant/.ssh/authorized_keys`, 0o600);
  await write(
    "/etc/sudoers.d/vagrant",
    "vagrant ALL=(ALL) NOPASSWD: ALL\nDefaults:vagrant !requiretty\n",
  );
  await Deno.chmod(`${rootfs}/etc/sudoers.d/vagrant`, 0o440);
  // DHCP on the first NIC: net.ifnames=0 on the kernel command line names it eth0
  await write(
    "/etc/systemd/network/10-eth0.network",
    "[Match]\nName=eth0\n\n[Network]\nDHCP=yes\n\n[DHCPv4]\nClientIdentifier=mac\n",
  );
  await write("/etc/ssh/sshd_config.d/10-triad.conf", "UseDNS no\nPasswordAuthentication yes\n");
  // host keys are made per machine at first boot, never shipped in the box
  for await (const entry of Deno.readDir(`${rootfs}/etc/ssh`)) {
    if (entry.name.startsWith("ssh_host_")) await Deno.remove(`${rootfs}/etc/ssh/${entry.name}`);
  }
  await write(
    "/etc/systemd/system/triad-ssh-keygen.service",
    `[Unit]
Description=Generate SSH host keys
Before=ssh.service
ConditionPathExists=!/etc/ssh/ssh_host_ed25519_key

[Service]
Type=oneshot
ExecStart=/usr/bin/ssh-keygen -A

[Install]
WantedBy=multi-user.target
`,
  );
  await runCommand("chroot", [rootfs, "systemctl", "enable", "triad-ssh-keygen.service"]);
  await runCommand("chroot", [rootfs, "systemctl", "enable", "systemd-networkd", "ssh"]);
  // every machine gets its own machine-id (and so its own DHCP DUID) at first boot
  await write("/etc/machine-id", "");
  await Deno.remove(`${rootfs}/var/lib/dbus/machine-id`).catch(() => {});
  await write("/etc/resolv.conf", "");
  await runCommand("chroot", [rootfs, "apt-get", "clean"]);

  let kernelFile: string | undefined;
  for await (const entry of Deno.readDir(`${rootfs}/boot`)) {
    if (entry.name.startsWith("vmlinuz-")) kernelFile = entry.name;
  }
  if (!kernelFile) throw new VmError(`No kernel in ${rootfs}/boot`, { code: "command_failed" });
  const version = kernelFile.slice("vmlinuz-".length);
  const kernel = {
    version,
    vmlinuz: `/boot/vmlinuz-${version}`,
    initrd: `/boot/initrd.img-${version}`,
  };
  await Deno.mkdir(`${rootfs}/boot/extlinux`, { recursive: true });
  await write(
    "/boot/extlinux/extlinux.conf",
    `DEFAULT linux
PROMPT 0
TIMEOUT 0
LABEL linux
  LINUX ${kernel.vmlinuz}
  INITRD ${kernel.initrd}
  APPEND root=LABEL=${ROOT_LABEL} rw console=tty0 console=ttyS0,115200n8 net.ifnames=0 biosdevname=0 panic=10
`,
  );
  return kernel;
}

async function assembleDisk(
  rootfs: string,
  raw: string,
  sizeGiB: number,
  work: string,
): Promise<void> {
  await runCommand("truncate", ["-s", `${sizeGiB}G`, raw]);
  await runCommand("sfdisk", ["--quiet", raw], {
    stdin: `label: dos\nstart=${PARTITION_OFFSET / 512}, type=83, bootable\n`,
  });
  // extlinux reads neither 64-bit ext4 nor metadata checksums
  await runCommand("mkfs.ext4", [
    "-q",
    "-F",
    "-L",
    ROOT_LABEL,
    "-O",
    "^64bit,^metadata_csum",
    "-E",
    `offset=${PARTITION_OFFSET}`,
    "-d",
    rootfs,
    raw,
    `${sizeGiB * 1024 - 1}M`,
  ]);
  const mnt = `${work}/mnt`;
  await Deno.mkdir(mnt);
  await runCommand("mount", ["-o", `loop,offset=${PARTITION_OFFSET}`, raw, mnt]);
  try {
    await runCommand("extlinux", ["--install", `${mnt}/boot/extlinux`]);
  } finally {
    await runCommand("umount", [mnt]);
  }
  const mbr = [
    "/usr/lib/syslinux/mbr/mbr.bin",
    "/usr/lib/SYSLINUX/mbr.bin",
    "/usr/share/syslinux/mbr.bin",
  ];
  let mbrPath: string | undefined;
  for (const path of mbr) if (await exists(path)) mbrPath = path;
  if (!mbrPath) {
    throw new VmError("No syslinux mbr.bin: apt-get install syslinux-common", {
      code: "missing_tool",
    });
  }
  await runCommand("dd", [`if=${mbrPath}`, `of=${raw}`, "bs=440", "count=1", "conv=notrunc"]);
}
