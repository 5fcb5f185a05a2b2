/**
 * A minimal ELF64 reader: sections (to find `.BTF` in a BPF object), function symbols as file
 * offsets (for uprobes) and SystemTap SDT notes (for USDT probes).
 *
 * @module
 */
import { TriadError } from "@triad/core";

/** One section of an ELF file. */
interface ElfSection {
  /** The section name, such as `.BTF`. */
  name: string;
  /** The section type (`SHT_*`). */
  type: number;
  /** The bytes of the section (a view into the file). */
  data: Uint8Array;
  /** Its virtual address when loaded (`sh_addr`). */
  address: number;
  /** Its offset in the file (`sh_offset`). */
  offset: number;
  /** The index of a related section (`sh_link`: a symbol table's string table). */
  link: number;
}

/**
 * Lists the sections of an ELF64 little-endian file.
 *
 * @param bytes The file.
 * @param where A name for the file in error messages.
 * @returns Its sections.
 */
export function elfSections(bytes: Uint8Array, where = "ELF object"): ElfSection[] {
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const fail = (what: string) => new TriadError(`${where}: ${what}`, { code: "bad_elf" });
  if (bytes.length < 64 || view.getUint32(0) !== 0x7f454c46) throw fail("not an ELF file");
  if (bytes[4] !== 2) throw fail("not a 64-bit ELF file");
  if (bytes[5] !== 1) throw fail("not a little-endian ELF file");
  const shoff = Number(view.getBigUint64(0x28, true));
  const shentsize = view.getUint16(0x3a, true);
  const shnum = view.getUint16(0x3c, true);
  const shstrndx = view.getUint16(0x3e, true);
  if (shoff + shnum * shentsize > bytes.length) {
    throw fail(`section headers at offset ${shoff} run past the end of the file`);
  }
  const headers = [];
  for (let i = 0; i < shnum; i++) {
    const base = shoff + i * shentsize;
    const offset = Number(view.getBigUint64(base + 24, true));
    const size = Number(view.getBigUint64(base + 32, true));
    const type = view.getUint32(base + 4, true);
    // SHT_NOBITS (8) occupies no bytes in the file.
    if (type !== 8 && offset + size > bytes.length) {
      throw fail(`section ${i} at offset ${offset} runs past the end of the file`);
    }
    headers.push({
      nameOffset: view.getUint32(base, true),
      type,
      offset,
      size,
      address: Number(view.getBigUint64(base + 16, true)),
      link: view.getUint32(base + 40, true),
    });
  }
  const names = headers[shstrndx];
  const decoder = new TextDecoder();
  return headers.map((header) => {
    let name = "";
    if (names !== undefined) {
      const start = names.offset + header.nameOffset;
      let end = start;
      while (end < bytes.length && bytes[end] !== 0) end++;
      name = decoder.decode(bytes.subarray(start, end));
    }
    return {
      name,
      type: header.type,
      address: header.address,
      offset: header.offset,
      link: header.link,
      data: header.type === 8
        ? new Uint8Array(0)
        : bytes.subarray(header.offset, header.offset + header.size),
    };
  });
}

/**
 * Finds function symbols of an ELF file (executable or shared library) and returns where each
 * starts in the file, as uprobes want it.
 *
 * @param bytes The file.
 * @param names The function names.
 * @param where A name for the file in error messages.
 * @returns The file offset of each name (in order); throws naming the first one missing.
 */
export function elfFunctionOffsets(
  bytes: Uint8Array,
  names: readonly string[],
  where: string,
): number[] {
  const sections = elfSections(bytes, where);
  const wanted = new Map<string, number>();
  const decoder = new TextDecoder();
  for (const table of sections) {
    if (table.type !== 2 && table.type !== 11) continue; // SHT_SYMTAB, SHT_DYNSYM
    const strings = sections[table.link]?.data ?? new Uint8Array(0);
    const view = new DataView(table.data.buffer, table.data.byteOffset, table.data.byteLength);
    for (let at = 0; at + 24 <= table.data.length; at += 24) {
      const info = view.getUint8(at + 4);
      const section = view.getUint16(at + 6, true);
      const value = Number(view.getBigUint64(at + 8, true));
      if ((info & 0xf) !== 2 || section === 0 || value === 0) continue; // STT_FUNC, defined
      const start = view.getUint32(at, true);
      let end = start;
      while (end < strings.length && strings[end] !== 0) end++;
      const name = decoder.decode(strings.subarray(start, end));
      const home = sections[section];
      if (home !== undefined && !wanted.has(name)) {
        wanted.set(name, value - home.address + home.offset);
      }
    }
  }
  return names.map((name) => {
    const offset = wanted.get(name);
    if (offset === undefined) {
      throw new TriadError(`${where}: no function symbol ${name}`, { code: "no_such_symbol" });
    }
    return offset;
  });
}

/** One USDT probe site from `.note.stapsdt`. */
export interface UsdtNote {
  /** The provider, such as `triad`. */
  provider: string;
  /** The probe name, such as `step`. */
  name: string;
  /** Where the probe instruction is, as a file offset (what uprobes take). */
  offset: number;
  /** The file offset of the probe's semaphore (0 when it has none). */
  semaphoreOffset: number;
  /** The argument specs, such as `-4@-4(%rsp) 8@%rax`. */
  args: string;
}

/**
 * Reads the SystemTap SDT notes (USDT probes) of an ELF file.
 *
 * @param bytes The file.
 * @param where A name for the file in error messages.
 * @returns Every probe site.
 */
export function elfUsdtNotes(bytes: Uint8Array, where: string): UsdtNote[] {
  const sections = elfSections(bytes, where);
  const notes = sections.find((section) => section.name === ".note.stapsdt");
  if (notes === undefined) return [];
  const base = sections.find((section) => section.name === ".stapsdt.base");
  const toOffset = (address: number): number => {
    const home = sections.find((s) =>
      s.type !== 8 && s.address !== 0 && address >= s.address &&
      address < s.address + s.data.length
    );
    if (home === undefined) {
      throw new TriadError(`${where}: USDT address 0x${address.toString(16)} is in no section`, {
        code: "bad_elf",
      });
    }
    return address - home.address + home.offset;
  };
  const view = new DataView(notes.data.buffer, notes.data.byteOffset, notes.data.byteLength);
  const decoder = new TextDecoder();
  const out: UsdtNote[] = [];
  const align = (n: number) => (n + 3) & ~3;
  for (let at = 0; at + 12 <= notes.data.length;) {
    const nameSize = view.getUint32(at, true);
    const descSize = view.getUint32(at + 4, true);
    const type = view.getUint32(at + 8, true);
    const descStart = at + 12 + align(nameSize);
    const owner = decoder.decode(notes.data.subarray(at + 12, at + 12 + nameSize - 1));
    if (owner === "stapsdt" && type === 3 && descSize >= 24) {
      let pc = Number(view.getBigUint64(descStart, true));
      const noteBase = Number(view.getBigUint64(descStart + 8, true));
      const semaphore = Number(view.getBigUint64(descStart + 16, true));
      // A prelinked file moved its sections: the note's base says by how much.
      if (base !== undefined && noteBase !== 0) pc += base.address - noteBase;
      const strings = decoder.decode(notes.data.subarray(descStart + 24, descStart + descSize))
        .split("\0");
      out.push({
        provider: strings[0] ?? "",
        name: strings[1] ?? "",
        offset: toOffset(pc),
        semaphoreOffset: semaphore === 0 ? 0 : toOffset(semaphore),
        args: strings[2] ?? "",
      });
    }
    at = descStart + align(descSize);
  }
  return out;
}
