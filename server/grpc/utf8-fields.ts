import { isUtf8 } from 'node:buffer';

/** The parts of a protobuf DescriptorProto (as @grpc/proto-loader gives it) the check reads. */
export interface MessageDescriptor {
  name?: string;
  field: readonly { name: string; number: number; label: string; type: string; typeName: string }[];
  nestedType?: readonly MessageDescriptor[];
  /** `mapEntry` marks the entry type of a `map<K, V>` field. */
  options?: { mapEntry?: boolean } | null;
}

/** A message type by the name a field gives it (`Model`, relative to the package), or undefined. */
export type ResolveMessage = (typeName: string) => MessageDescriptor | undefined;

const WIRE = { varint: 0, fixed64: 1, length: 2, startGroup: 3, endGroup: 4, fixed32: 5 } as const;

/** The wire type a field of `type` is sent with (repeated numbers may also come packed, as length-delimited). */
function wireTypeOf(type: string): number {
  if (type === 'TYPE_STRING' || type === 'TYPE_BYTES' || type === 'TYPE_MESSAGE') return WIRE.length;
  if (type === 'TYPE_DOUBLE' || type === 'TYPE_FIXED64' || type === 'TYPE_SFIXED64') return WIRE.fixed64;
  if (type === 'TYPE_FLOAT' || type === 'TYPE_FIXED32' || type === 'TYPE_SFIXED32') return WIRE.fixed32;
  if (type === 'TYPE_GROUP') return WIRE.startGroup;
  return WIRE.varint;
}

class Cursor {
  position = 0;
  constructor(readonly bytes: Buffer) {}

  get done(): boolean {
    return this.position >= this.bytes.length;
  }

  varint(): number {
    let value = 0;
    for (let shift = 0; ; shift += 7) {
      if (this.done || shift > 63) throw new Error('truncated varint');
      const byte = this.bytes[this.position++]!;
      // Only lengths and keys are used, and they fit in 32 bits; larger values are skipped over.
      if (shift < 32) value += (byte & 0x7f) * 2 ** shift;
      if ((byte & 0x80) === 0) return value;
    }
  }

  take(length: number): Buffer {
    if (length > this.bytes.length - this.position) throw new Error('truncated field');
    const slice = this.bytes.subarray(this.position, this.position + length);
    this.position += length;
    return slice;
  }

  /** Skips the value of a field of `wireType` whose key was just read (`field`, for groups). */
  skip(wireType: number, field: number): void {
    if (wireType === WIRE.varint) this.varint();
    else if (wireType === WIRE.fixed64) this.take(8);
    else if (wireType === WIRE.fixed32) this.take(4);
    else if (wireType === WIRE.length) this.take(this.varint());
    else if (wireType === WIRE.startGroup) {
      for (;;) {
        const key = this.varint();
        if ((key & 7) === WIRE.endGroup) {
          if (key >>> 3 !== field) throw new Error('mismatched end group');
          return;
        }
        this.skip(key & 7, key >>> 3);
      }
    } else throw new Error(`invalid wire type ${wireType}`);
  }
}

/**
 * The first problem, as `field: …`, with the string fields of an encoded message: text that is
 * not UTF-8 (the decoder would put U+FFFD in its place without a word; a JavaScript client
 * encodes a lone surrogate that way), or a field sent with another wire type than its declared
 * one (the decoder would read it as its declared type, past what this walk checked). Map entries
 * and other messages nested in the request are walked too; null when there is no problem.
 * A map given the same key twice is refused too (`labels.a: given twice`): the decoder keeps the
 * last without a word, where REST refuses a JSON object with a duplicate key.
 * Unknown fields are skipped, and the bytes are assumed to have decoded already.
 */
export function stringFieldProblem(bytes: Buffer, type: MessageDescriptor, resolve: ResolveMessage): string | null {
  return walk(new Cursor(bytes), bytes.length, [type], resolve, '');
}

function walk(cursor: Cursor, end: number, scope: readonly MessageDescriptor[], resolve: ResolveMessage, path: string): string | null {
  const type = scope[scope.length - 1]!;
  /** The keys seen in each map field of this message, by field number. */
  const mapKeys = new Map<number, Set<string>>();
  while (cursor.position < end) {
    const key = cursor.varint();
    const number = key >>> 3;
    const wireType = key & 7;
    const field = type.field.find((candidate) => candidate.number === number);
    if (!field) {
      cursor.skip(wireType, number);
      continue;
    }
    const where = path === '' ? field.name : `${path}.${field.name}`;
    const expected = wireTypeOf(field.type);
    const packed = wireType === WIRE.length && field.label === 'LABEL_REPEATED' && expected !== WIRE.length && expected !== WIRE.startGroup;
    if (wireType !== expected && !packed) return `${where}: sent with wire type ${wireType}, not the ${expected} of its declared type`;
    if (wireType !== WIRE.length || packed) {
      cursor.skip(wireType, number);
      continue;
    }
    const value = cursor.take(cursor.varint());
    if (field.type === 'TYPE_STRING' && !isUtf8(value)) return `${where}: ${notUtf8(value)}`;
    if (field.type === 'TYPE_MESSAGE') {
      const nested = resolveIn(scope, field.typeName, resolve);
      if (!nested) continue;
      const problem = walk(new Cursor(value), value.length, [...scope, nested], resolve, where);
      if (problem) return problem;
      if (nested.options?.mapEntry) {
        const mapKey = entryKey(value);
        const seen = mapKeys.get(number) ?? new Set<string>();
        if (seen.has(mapKey)) return `${where}${keyShown(mapKey)}: given twice; send each key once`;
        mapKeys.set(number, seen.add(mapKey));
      }
    }
  }
  return null;
}

/** A map key after its field's name: `.site`, or quoted (`[""]`, `["a b"]`) when it is not a plain word; a long one cut. */
function keyShown(key: string): string {
  if (/^[A-Za-z0-9_-]{1,100}$/.test(key)) return `.${key}`;
  return `[${JSON.stringify(key.length > 100 ? `${key.slice(0, 100).toWellFormed()}…` : key)}]`;
}

/**
 * The key (field 1) of an encoded map entry, strings already checked as UTF-8: the last one given,
 * '' when none (protobuf's rules). A key of another type (map<int32, …>) is told apart by its bytes.
 */
function entryKey(entry: Buffer): string {
  const cursor = new Cursor(entry);
  let key = '';
  while (!cursor.done) {
    const tag = cursor.varint();
    const start = cursor.position;
    if (tag === ((1 << 3) | WIRE.length)) key = cursor.take(cursor.varint()).toString('utf8');
    else {
      cursor.skip(tag & 7, tag >>> 3);
      if (tag >>> 3 === 1) key = `0x${entry.subarray(start, cursor.position).toString('hex')}`;
    }
  }
  return key;
}

/** A message type by name: nested in the enclosing messages first (map entries), then at the package's level. */
function resolveIn(scope: readonly MessageDescriptor[], typeName: string, resolve: ResolveMessage): MessageDescriptor | undefined {
  for (let index = scope.length - 1; index >= 0; index--) {
    const nested = scope[index]!.nestedType?.find((candidate) => candidate.name === typeName);
    if (nested) return nested;
  }
  return resolve(typeName);
}

/**
 * What is wrong with a string field's bytes: a surrogate encoded as UTF-8 (ED A0..BF, what a
 * JavaScript client sends for a lone "\ud800") is named as that; any other bytes as plain "not
 * valid UTF-8", not as a surrogate the caller never sent.
 */
function notUtf8(value: Uint8Array): string {
  for (let i = 0; i + 1 < value.length; i++) {
    if (value[i] === 0xed && value[i + 1]! >= 0xa0 && value[i + 1]! <= 0xbf) return 'not valid UTF-8 (an unpaired surrogate, \\ud800 to \\udfff, has no UTF-8)';
  }
  return 'not valid UTF-8 text; send strings as UTF-8';
}
