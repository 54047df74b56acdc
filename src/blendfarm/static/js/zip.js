// Lists the entries of a .zip File without reading the whole file: only the End Of Central
// Directory record (at the end of the file) and the central directory itself are read.
// Handles ZIP64 archives (more than 65535 entries or more than 4 GiB) and archive comments.

const SIG_EOCD = 0x06054b50;
const SIG_ZIP64_LOCATOR = 0x07064b50;
const SIG_ZIP64_EOCD = 0x06064b50;
const SIG_CENTRAL = 0x02014b50;
const EOCD_SIZE = 22;
const MAX_COMMENT = 0xffff;

// Code page 437: how zip names without the UTF-8 flag are decoded (as Python's zipfile does).
const CP437_HIGH =
  "ÇüéâäàåçêëèïîìÄÅÉæÆôöòûùÿÖÜ¢£¥₧ƒáíóúñÑªº¿⌐¬½¼¡«»░▒▓│┤╡╢╖╕╣║╗╝╜╛┐└┴┬├─┼╞╟╚╔╩╦╠═╬╧╨╤╥╙╘╒╓╫╪┘┌█▄▌▐▀" +
  "αßΓπΣσµτΦΘΩδ∞φε∩≡±≥≤⌠⌡÷≈°∙·√ⁿ²■\u00a0";

export class ZipError extends Error {
  constructor(message) {
    super(message);
    this.name = "ZipError";
  }
}

async function readRange(file, start, end) {
  return new DataView(await file.slice(start, end).arrayBuffer());
}

function uint64(view, offset) {
  const low = view.getUint32(offset, true);
  const high = view.getUint32(offset + 4, true);
  return high * 0x100000000 + low;
}

function decodeName(bytes, utf8) {
  if (utf8) return new TextDecoder("utf-8").decode(bytes);
  let out = "";
  for (const b of bytes) out += b < 0x80 ? String.fromCharCode(b) : CP437_HIGH[b - 0x80];
  return out;
}

function zip64Extra(view, start, length, wanted) {
  // wanted: which of [uncompressed, compressed, offset] were 0xFFFFFFFF, in that order.
  const values = {};
  let pos = start;
  const end = start + length;
  while (pos + 4 <= end) {
    const id = view.getUint16(pos, true);
    const size = view.getUint16(pos + 2, true);
    if (id === 0x0001) {
      let p = pos + 4;
      for (const key of wanted) {
        if (p + 8 > pos + 4 + size) break;
        values[key] = uint64(view, p);
        p += 8;
      }
      break;
    }
    pos += 4 + size;
  }
  return values;
}

/**
 * Resolves to [{name, size, compressedSize, isDir}] for every entry of the zip `file`.
 * Rejects with ZipError when the file is not a readable zip.
 */
export async function listZip(file) {
  const size = file.size;
  if (size < EOCD_SIZE) throw new ZipError("The file is too small to be a zip.");
  const tailStart = Math.max(0, size - (EOCD_SIZE + MAX_COMMENT + 20));
  const tail = await readRange(file, tailStart, size);

  let eocd = -1;
  for (let i = tail.byteLength - EOCD_SIZE; i >= 0; i--) {
    if (tail.getUint32(i, true) === SIG_EOCD) {
      const commentLength = tail.getUint16(i + 20, true);
      if (i + EOCD_SIZE + commentLength <= tail.byteLength) {
        eocd = i;
        break;
      }
    }
  }
  if (eocd < 0) throw new ZipError("This is not a zip file (no end of central directory found).");

  let count = tail.getUint16(eocd + 10, true);
  let cdSize = tail.getUint32(eocd + 12, true);
  let cdOffset = tail.getUint32(eocd + 16, true);
  const eocdAbs = tailStart + eocd;

  const locator = eocd - 20;
  const isZip64 = locator >= 0 && tail.getUint32(locator, true) === SIG_ZIP64_LOCATOR;
  if (isZip64) {
    const recordOffset = uint64(tail, locator + 8);
    const record = await readRange(file, recordOffset, recordOffset + 56);
    if (record.byteLength < 56 || record.getUint32(0, true) !== SIG_ZIP64_EOCD) {
      throw new ZipError("This zip's ZIP64 directory record is damaged.");
    }
    count = uint64(record, 32);
    cdSize = uint64(record, 40);
    cdOffset = uint64(record, 48);
  } else if (count === 0xffff || cdSize === 0xffffffff || cdOffset === 0xffffffff) {
    throw new ZipError("This zip's ZIP64 locator is missing.");
  }

  // A zip with data prepended (self-extracting) has offsets relative to the zip part.
  let shift = 0;
  const cdEnd = cdOffset + cdSize;
  if (cdEnd > size) throw new ZipError("This zip is truncated (its directory lies past the end of the file).");
  if (!isZip64 && cdEnd < eocdAbs) shift = eocdAbs - cdEnd;

  const cd = await readRange(file, cdOffset + shift, cdOffset + shift + cdSize);
  const entries = [];
  let pos = 0;
  for (let i = 0; i < count; i++) {
    if (pos + 46 > cd.byteLength || cd.getUint32(pos, true) !== SIG_CENTRAL) {
      throw new ZipError("This zip's central directory is damaged.");
    }
    const flags = cd.getUint16(pos + 8, true);
    let compressedSize = cd.getUint32(pos + 20, true);
    let uncompressedSize = cd.getUint32(pos + 24, true);
    const nameLength = cd.getUint16(pos + 28, true);
    const extraLength = cd.getUint16(pos + 30, true);
    const commentLength = cd.getUint16(pos + 32, true);
    const nameStart = pos + 46;
    if (nameStart + nameLength + extraLength + commentLength > cd.byteLength) {
      throw new ZipError("This zip's central directory is damaged.");
    }
    const nameBytes = new Uint8Array(cd.buffer, cd.byteOffset + nameStart, nameLength);
    const name = decodeName(nameBytes, (flags & 0x0800) !== 0);
    const wanted = [];
    if (uncompressedSize === 0xffffffff) wanted.push("uncompressed");
    if (compressedSize === 0xffffffff) wanted.push("compressed");
    if (wanted.length) {
      const extra = zip64Extra(cd, nameStart + nameLength, extraLength, wanted);
      if (extra.uncompressed !== undefined) uncompressedSize = extra.uncompressed;
      if (extra.compressed !== undefined) compressedSize = extra.compressed;
    }
    entries.push({ name, size: uncompressedSize, compressedSize, isDir: name.endsWith("/") });
    pos = nameStart + nameLength + extraLength + commentLength;
  }
  return entries;
}

/** The .blend files among zip entries, shallowest first, then by name. */
export function blendFiles(entries) {
  return entries
    .filter((e) => !e.isDir && /\.blend$/i.test(e.name))
    .filter((e) => !e.name.startsWith("__MACOSX/") && !/(^|\/)\._/.test(e.name))
    .map((e) => e.name)
    .sort((a, b) => a.split("/").length - b.split("/").length || a.localeCompare(b));
}
