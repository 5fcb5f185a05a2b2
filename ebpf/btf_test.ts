import assert from "node:assert/strict";
import { BTF, BtfError } from "./btf.ts";
import { BtfBuilder } from "./testdata/btf_builder.ts";

function sample(): BTF {
  const b = new BtfBuilder();
  const u32 = b.int("unsigned int", 4); // 1
  const u8 = b.int("unsigned char", 1); // 2
  const char = b.int("char", 1, true); // 3
  const typedef = b.typedef("__u32", u32); // 4
  const array = b.array(char, u32, 16); // 5
  const kind = b.enum("kind", [["A", 1], ["B", -2]], true); // 6
  b.struct("event", 32, [
    { name: "pid", type: typedef, bitOffset: 0 },
    { name: "flag", type: u8, bitOffset: 32, bits: 3 },
    { name: "rest", type: u8, bitOffset: 35, bits: 5 },
    { name: "comm", type: array, bitOffset: 64 },
    { name: "kind", type: kind, bitOffset: 192 },
  ]); // 7
  b.const(typedef); // 8
  return BTF.parse(b.build(), { source: "sample" });
}

Deno.test("BTF.parse() decodes every kind it is given", async (t) => {
  const btf = sample();
  await t.step("types by id and name", () => {
    assert.equal(btf.count, 9);
    assert.equal(btf.type(0).kind, "void");
    const event = btf.typeByName("event", "struct");
    assert.equal(event.size, 32);
    assert.deepEqual(event.members.map((m) => [m.name, m.bitOffset, m.bitSize]), [
      ["pid", 0, 0],
      ["flag", 32, 3],
      ["rest", 35, 5],
      ["comm", 64, 0],
      ["kind", 192, 0],
    ]);
  });
  await t.step("typedef and modifier resolution", () => {
    assert.equal(btf.resolve(8).name, "unsigned int");
    assert.equal(btf.typeName(8), "const __u32");
    assert.equal(btf.sizeof(5), 16);
    assert.equal(btf.typeName(5), "char[16]");
  });
  await t.step("enums keep signed values", () => {
    const kind = btf.typeByName("kind", "enum");
    assert.deepEqual(kind.values, [{ name: "A", value: 1 }, { name: "B", value: -2 }]);
    assert.equal(kind.signed, true);
  });
  await t.step("unknown names fail with the name", () => {
    assert.throws(
      () => btf.typeByName("nope", "struct"),
      (e) => e instanceof BtfError && /no struct named "nope"/.test(e.message),
    );
    assert.equal(btf.findByName("event", "union"), undefined);
  });
});

Deno.test("BTF.parse() reads split BTF on top of its base (as kernel modules have)", () => {
  const baseBuilder = new BtfBuilder();
  baseBuilder.int("int", 4, true); // 1
  baseBuilder.struct("sock", 8, [{ name: "refs", type: 1, bitOffset: 0 }]); // 2
  const baseBytes = baseBuilder.build();
  const base = BTF.parse(baseBytes, { source: "vmlinux" });
  const baseStrings = new DataView(baseBytes.buffer).getUint32(20, true);
  const split = new BtfBuilder({ baseTypes: base.count - 1, baseStrings });
  const ptr = split.ptr(2); // 3: struct sock *
  split.struct("conn", 16, [
    { name: "sk", type: ptr, bitOffset: 0 },
    { name: "state", type: 1, bitOffset: 64 },
  ]); // 4
  const module = BTF.parse(split.build(), { base, source: "nf_conntrack" });
  assert.equal(module.count, 5);
  const conn = module.typeByName("conn", "struct");
  assert.equal(conn.id, 4);
  assert.equal(module.typeName(conn.members[0]!.type), "struct sock *");
  assert.equal(module.resolve(conn.members[1]!.type).name, "int");
  assert.equal(module.typeByName("sock", "struct").id, 2); // found through the base
  assert.deepEqual([...module.types()].map((t) => t.id), [3, 4]); // only its own types
});

Deno.test("BTF.parse() rejects malformed input with the reason", () => {
  assert.throws(() => BTF.parse(new Uint8Array(8)), /too short for a BTF header/);
  const bad = sample();
  void bad;
  const bytes = new BtfBuilder().build();
  bytes[0] = 0;
  assert.throws(() => BTF.parse(bytes, { source: "x.btf" }), /x\.btf: bad magic/);
  const b = new BtfBuilder();
  b.int("int", 4);
  const truncated = b.build();
  new DataView(truncated.buffer).setUint32(12, 8, true); // type section shorter than the type
  assert.throws(() => BTF.parse(truncated), /truncated|ends inside a type/);
});

const hasKernelBtf = (() => {
  try {
    Deno.statSync("/sys/kernel/btf/vmlinux");
    return true;
  } catch {
    console.error(
      "SKIP BTF.kernel(): no /sys/kernel/btf/vmlinux (CONFIG_DEBUG_INFO_BTF, Linux 5.4+)",
    );
    return false;
  }
})();

Deno.test({
  name: "BTF.kernel() reads the running kernel's types",
  ignore: !hasKernelBtf,
  fn: async (t) => {
    const btf = BTF.kernel();
    await t.step("struct members with bit offsets", () => {
      const task = btf.typeByName("task_struct", "struct");
      const pid = task.members.find((m) => m.name === "pid");
      assert.ok(pid, "task_struct has pid");
      assert.equal(pid.bitOffset % 8, 0);
      assert.equal(btf.resolve(pid.type).kind, "int");
      assert.equal(btf.sizeof(pid.type), 4);
    });
    await t.step("enums", () => {
      const mapType = btf.typeByName("bpf_map_type", "enum");
      assert.equal(mapType.values.find((v) => v.name === "BPF_MAP_TYPE_RINGBUF")?.value, 27);
    });
    await t.step("typedefs resolve to their base type", () => {
      assert.equal(btf.typeByName("u32", "typedef").kind, "typedef");
      assert.deepEqual(btf.resolve(btf.typeByName("u32", "typedef").id).name, "unsigned int");
    });
    await t.step("functions and their prototypes", () => {
      const fn = btf.typeByName("tcp_connect", "func");
      const proto = btf.type(fn.type);
      assert.equal(proto.kind, "func_proto");
      assert.equal(
        btf.typeName(proto.kind === "func_proto" ? proto.params[0]!.type : 0),
        "struct sock *",
      );
    });
    await t.step("the same instance is shared", () => {
      assert.equal(BTF.kernel(), btf);
    });
  },
});
