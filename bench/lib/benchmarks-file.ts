import { cpus, totalmem, type as osType, release } from 'node:os';
import { readFileSync } from 'node:fs';
import { mkdir, readFile, writeFile } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

export const REPO_ROOT = fileURLToPath(new URL('../../', import.meta.url));
export const BENCHMARKS_MD = join(REPO_ROOT, 'BENCHMARKS.md');

/** One line describing the machine a benchmark ran on. */
export function describeMachine(): string {
  const cpu = cpus();
  const model = cpu[0]?.model.trim() ?? 'unknown CPU';
  const detail = cpuDetail();
  return `${model}${detail ? ` (${detail})` : ''}, ${cpu.length} cores, ${(totalmem() / 2 ** 30).toFixed(0)} GiB RAM, ${osType()} ${release()}, Node ${process.version}`;
}

/**
 * On Linux, the CPU's family and model numbers and its widest vector instructions: a virtual
 * machine often names its CPU only "AMD EPYC", which covers machines three times apart in speed.
 */
function cpuDetail(): string | null {
  let info: string;
  try {
    info = readFileSync('/proc/cpuinfo', 'utf8');
  } catch {
    return null;
  }
  const field = (name: string) => new RegExp(`^${name}\\s*:\\s*(.*)$`, 'm').exec(info)?.[1]?.trim();
  const flags = new Set((field('flags') ?? '').split(/\s+/));
  const vector = flags.has('avx512f') ? 'AVX-512' : flags.has('avx2') ? 'AVX2' : flags.has('avx') ? 'AVX' : null;
  const parts = [field('cpu family') && `family ${field('cpu family')}`, field('model') && `model ${field('model')}`, vector].filter(Boolean);
  return parts.length > 0 ? parts.join(', ') : null;
}

/**
 * Replaces the section headed `## <title>` in BENCHMARKS.md (up to the next `## ` heading), or
 * appends it; every benchmark owns exactly one section.
 */
export async function writeBenchmarkSection(title: string, body: string): Promise<void> {
  let text = '';
  try {
    text = await readFile(BENCHMARKS_MD, 'utf8');
  } catch {
    text = '# Benchmarks\n\nEach section is written by its `npm run bench:*` script; numbers are medians unless noted.\n';
  }
  const heading = `## ${title}`;
  const section = `${heading}\n\n${body.trim()}\n`;
  const start = text.indexOf(`${heading}\n`);
  if (start < 0) {
    text = `${text.trimEnd()}\n\n${section}`;
  } else {
    const next = text.indexOf('\n## ', start + heading.length);
    text = `${text.slice(0, start)}${section}${next < 0 ? '' : text.slice(next)}`;
  }
  await writeFile(BENCHMARKS_MD, text.endsWith('\n') ? text : `${text}\n`);
}

export function resultsJsonPath(name: string): string {
  return join(REPO_ROOT, 'bench', 'results', `${name}.json`);
}

export async function writeResultsJson(name: string, value: unknown): Promise<string> {
  const path = resultsJsonPath(name);
  await mkdir(dirname(path), { recursive: true });
  await writeFile(path, `${JSON.stringify(value, null, 2)}\n`);
  return path;
}

export function mean(values: readonly number[]): number {
  return values.reduce((a, b) => a + b, 0) / values.length;
}

export function std(values: readonly number[]): number {
  const m = mean(values);
  return Math.sqrt(values.reduce((a, b) => a + (b - m) ** 2, 0) / Math.max(1, values.length - 1));
}

export function median(values: readonly number[]): number {
  const sorted = [...values].sort((a, b) => a - b);
  const mid = sorted.length >> 1;
  return sorted.length % 2 ? sorted[mid]! : (sorted[mid - 1]! + sorted[mid]!) / 2;
}

/** A markdown table from a header row and body rows. */
export function markdownTable(header: readonly string[], rows: readonly (readonly string[])[]): string {
  const line = (cells: readonly string[]) => `| ${cells.join(' | ')} |`;
  return [line(header), line(header.map(() => '---')), ...rows.map(line)].join('\n');
}
