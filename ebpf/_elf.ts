/**
 * A minimal ELF64 section reader: enough to find `.BTF` in a BPF object.
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
    headers.push({ nameOffset: view.getUint32(base, true), type, offset, size });
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
      data: header.type === 8
        ? new Uint8Array(0)
        : bytes.subarray(header.offset, header.offset + header.size),
    };
  });
}
