import { isUtf8 } from 'node:buffer';
import { UserError } from '../util/errors.ts';

// What is read as a data set's CSV text: the checks that its bytes are CSV text at all. Kept
// apart from the CSV parser, so the server, which reads files under --data-root, loads no parser.

/**
 * A data file's bytes as text; a UserError naming `source` when they are not CSV text: a workbook
 * or compressed file, or text that is not UTF-8.
 */
export function decodeDataText(bytes: Buffer, source: string): string {
  const format = BINARY_FORMATS.find(({ magic }) => bytes.subarray(0, magic.length).equals(magic));
  if (format) throw new UserError(`${source}: the file is ${format.what}, not CSV text: ${format.advice}`);
  const text = bytes.toString('utf8');
  // Read as UTF-8, every byte that is not becomes U+FFFD: names and classes lost letters, and
  // classes that differ only there ("Bär" and "Bör" in Windows-1252) became one. UTF-16 is told
  // apart, and named, by parseDataset.
  if (!isUtf8(bytes) && !looksLikeUtf16(text)) {
    throw new UserError(
      `${source}: line ${firstNonUtf8Line(bytes)} is not UTF-8 text (Windows-1252 or Latin-1, as Excel's "CSV (comma delimited)" saves?): ` +
        'save it as "CSV UTF-8 (comma delimited)", or convert it (iconv -f cp1252 -t utf-8)',
    );
  }
  return text;
}

/** The number of the first line of `bytes` that is not valid UTF-8 (1-based). */
function firstNonUtf8Line(bytes: Buffer): number {
  let line = 1;
  for (let start = 0; start < bytes.length; line++) {
    const end = bytes.indexOf(0x0a, start);
    const stop = end < 0 ? bytes.length : end;
    if (!isUtf8(bytes.subarray(start, stop))) return line;
    start = stop + 1;
  }
  return line;
}

/**
 * Files people give for a CSV by mistake, by their first bytes. Read as text they were reported
 * as something they are not: a workbook as "UTF-16 text" or "separated by tabs", a gzip as a
 * stray quote on line 2.
 */
const BINARY_FORMATS: { magic: Buffer; what: string; advice: string }[] = [
  { magic: Buffer.from('PK\x03\x04', 'latin1'), what: 'a zip archive (an Excel .xlsx or OpenDocument .ods workbook?)', advice: 'save the sheet as "CSV UTF-8 (comma delimited)"' },
  { magic: Buffer.from('d0cf11e0a1b11ae1', 'hex'), what: 'an Excel 97-2003 workbook (.xls)', advice: 'save the sheet as "CSV UTF-8 (comma delimited)"' },
  { magic: Buffer.from('1f8b', 'hex'), what: 'gzip-compressed', advice: 'decompress it first (gunzip)' },
];

/**
 * UTF-16 (Excel's "Unicode Text", PowerShell's default encoding) read as UTF-8: a byte order mark
 * (two U+FFFD), or text in which every other character is NUL. It would parse into nonsense
 * ("expect 3, got 1 on line 62"); binary garbage has NULs too, but far fewer.
 */
export function looksLikeUtf16(text: string): boolean {
  if (text.startsWith('\uFFFD\uFFFD')) return true;
  const head = text.slice(0, 1000);
  return head.length >= 4 && (head.match(/\0/g)?.length ?? 0) * 3 >= head.length;
}
