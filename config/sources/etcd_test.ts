import assert from "node:assert/strict";
import { denoFileSystem } from "../file_system.ts";
import { command, testWith } from "../../tests/requirements.ts";
import { startEtcd } from "../../tests/servers/etcd.ts";
import { etcdSource } from "./etcd.ts";

testWith(
  "etcdSource().load() reads a key prefix from etcd",
  [command("etcd", "etcd-server")],
  async () => {
    await using etcd = await startEtcd();
    await etcd.put("/app/dns/port", "5300");
    await etcd.put("/other", "x");
    const source = etcdSource({ endpoints: [etcd.endpoint], prefix: "/app/" });
    const context = { fetch, signal: new AbortController().signal, fs: denoFileSystem };
    const layer = await source.load(context);
    assert.equal(layer.kind, "remote");
    assert.deepEqual(layer.tree, { dns: { port: "5300" } });
    assert.deepEqual(layer.origins.get("dns.port"), {
      layer: "remote",
      source: "etcd",
      key: "/app/dns/port",
      revision: 2,
    });
  },
);
