/**
 * Test certificates made with the openssl CLI in a temp dir (removed when the process ends): a CA
 * and two server pairs it signed, valid for `localhost` and `127.0.0.1`.
 *
 * @module
 */

/** Paths of the files made. */
export interface TestCerts {
  dir: string;
  ca: string;
  cert: string;
  key: string;
  cert2: string;
  key2: string;
}

let made: Promise<TestCerts> | undefined;

async function openssl(args: string[], cwd: string): Promise<void> {
  const out = await new Deno.Command("openssl", { args, cwd, stdout: "null", stderr: "piped" })
    .output();
  if (!out.success) {
    throw new Error(`openssl ${args.join(" ")}: ${new TextDecoder().decode(out.stderr)}`);
  }
}

async function make(): Promise<TestCerts> {
  const dir = await Deno.makeTempDir({ prefix: "netloop-tls-" });
  globalThis.addEventListener("unload", () => {
    try {
      Deno.removeSync(dir, { recursive: true });
    } catch { /* gone already */ }
  });
  const ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes"];
  const ca = ["-x509", ...ec, "-keyout", "ca.key", "-out", "ca.pem", "-days", "2"];
  await openssl(["req", ...ca, "-subj", "/CN=netloop test CA"], dir);
  await Deno.writeTextFile(`${dir}/ext`, "subjectAltName=DNS:localhost,IP:127.0.0.1\n");
  for (const name of ["server", "server2"]) {
    const csr = [...ec, "-keyout", `${name}.key`, "-out", `${name}.csr`];
    await openssl(["req", ...csr, "-subj", `/CN=${name}`], dir);
    const sign = ["-CA", "ca.pem", "-CAkey", "ca.key", "-CAcreateserial", "-days", "2"];
    await openssl(
      ["x509", "-req", "-in", `${name}.csr`, ...sign, "-out", `${name}.pem`, "-extfile", "ext"],
      dir,
    );
  }
  return {
    dir,
    ca: `${dir}/ca.pem`,
    cert: `${dir}/server.pem`,
    key: `${dir}/server.key`,
    cert2: `${dir}/server2.pem`,
    key2: `${dir}/server2.key`,
  };
}

/** Makes the certificates once per process. */
export function makeTestCerts(): Promise<TestCerts> {
  made ??= make();
  return made;
}
