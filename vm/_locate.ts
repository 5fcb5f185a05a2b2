/**
 * Finding the files the harness needs on the host: the box's disk, Vagrant's insecure key, a
 * kernel for the KVM probe.
 *
 * @module
 */
import { runCommand } from "./_command.ts";
import { VmError } from "./errors.ts";

async function isFile(path: string): Promise<boolean> {
  try {
    return (await Deno.stat(path)).isFile;
  } catch {
    return false;
  }
}

async function subdirs(dir: string): Promise<string[]> {
  const names: string[] = [];
  try {
    for await (const entry of Deno.readDir(dir)) if (entry.isDirectory) names.push(entry.name);
  } catch { /* absent */ }
  return names.sort();
}

/** The directory Vagrant keeps boxes in. */
function vagrantBoxesDir(): string {
  const home = Deno.env.get("VAGRANT_HOME") ?? `${Deno.env.get("HOME") ?? "/root"}/.vagrant.d`;
  return `${home}/boxes`;
}

/** Returns the libvirt `box.img` of an added box (newest version), or `undefined`. */
export async function addedBoxImage(name: string): Promise<string | undefined> {
  const dir = `${vagrantBoxesDir()}/${name.replaceAll("/", "-VAGRANTSLASH-")}`;
  const versions = await subdirs(dir);
  for (const version of versions.reverse()) {
    const image = `${dir}/${version}/libvirt/box.img`;
    if (await isFile(image)) return image;
  }
  return undefined;
}

/** Returns whether Vagrant has a box of this name for the provider. */
export async function vagrantHasBox(name: string, provider: string): Promise<boolean> {
  const { stdout } = await runCommand("vagrant", ["box", "list", "--machine-readable"], {
    allowFailure: true,
    env: { VAGRANT_CHECKPOINT_DISABLE: "1" },
  });
  // lines: timestamp,target,box-name,NAME / ...,box-provider,PROVIDER in order
  let current: string | undefined;
  for (const line of stdout.split("\n")) {
    const fields = line.split(",");
    if (fields[2] === "box-name") current = fields[3];
    if (fields[2] === "box-provider" && current === name && fields[3] === provider) return true;
  }
  return false;
}

/** Returns the path of Vagrant's insecure private key shipped with the installed Vagrant. */
export async function insecurePrivateKey(): Promise<string> {
  const roots = [
    "/usr/share/rubygems-integration/all/gems",
    "/opt/vagrant/embedded/gems/gems",
    "/opt/vagrant/embedded/gems/2.3.4/gems",
    "/usr/lib/ruby/vendor_ruby",
  ];
  for (const root of roots) {
    for (const dir of (await subdirs(root)).filter((d) => d.startsWith("vagrant-")).reverse()) {
      const key = `${root}/${dir}/keys/vagrant`;
      if (await isFile(key)) return key;
    }
    if (await isFile(`${root}/keys/vagrant`)) return `${root}/keys/vagrant`;
  }
  throw new VmError("Cannot find Vagrant's insecure private key (keys/vagrant): install vagrant", {
    code: "missing_tool",
  });
}

/** Returns a kernel image good for the KVM probe: the box's, else the host's, else `undefined`. */
export async function probeKernel(cacheDir: string): Promise<string | undefined> {
  for (const dir of (await subdirs(cacheDir)).filter((d) => d.startsWith("debootstrap-"))) {
    try {
      for await (const entry of Deno.readDir(`${cacheDir}/${dir}/boot`)) {
        if (entry.name.startsWith("vmlinuz-")) return `${cacheDir}/${dir}/boot/${entry.name}`;
      }
    } catch { /* absent */ }
  }
  const host = `/boot/vmlinuz-${Deno.osRelease()}`;
  return await isFile(host) ? host : undefined;
}
