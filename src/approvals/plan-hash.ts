/**
 * Plan hashing (pure). An approval is bound to the exact plan its card showed: the card's
 * buttons carry this hash, the request stores it, and execution re-checks it. Two plans
 * hash alike only when they are the same data, whatever order their keys were built in.
 *
 * Canonical form: JSON with object keys sorted (by UTF-16 code unit, as Array#sort does),
 * arrays kept in the order given (order is meaning: port 3 of 7), no whitespace. Keys whose
 * value is undefined are left out, as JSON.stringify does; toJSON() is honoured (Dates).
 * Values JSON cannot round-trip (NaN, Infinity, bigint, functions, symbols, cycles) throw:
 * a plan that cannot be stored exactly must not be approvable.
 */
import { createHash } from 'node:crypto';

export function canonicalJson(value: unknown): string {
  return encode(value, new Set(), '$');
}

/** sha256 of the canonical JSON, lowercase hex (64 characters). */
export function planHash(plan: unknown): string {
  return createHash('sha256').update(canonicalJson(plan), 'utf8').digest('hex');
}

function encode(value: unknown, seen: Set<object>, at: string): string {
  if (value === null) return 'null';
  switch (typeof value) {
    case 'string':
    case 'boolean':
      return JSON.stringify(value);
    case 'number':
      if (!Number.isFinite(value)) throw new TypeError(`plan hash: ${at} is ${value}, which JSON cannot hold`);
      return JSON.stringify(value);
    case 'object':
      break;
    default:
      throw new TypeError(`plan hash: ${at} is a ${typeof value}, which JSON cannot hold`);
  }
  const obj = value as object;
  const toJSON = (obj as { toJSON?: unknown }).toJSON;
  if (typeof toJSON === 'function') return encode((toJSON as () => unknown).call(obj), seen, at);
  if (seen.has(obj)) throw new TypeError(`plan hash: ${at} refers back to itself`);
  seen.add(obj);
  try {
    if (Array.isArray(obj)) {
      // JSON.stringify writes null for undefined array slots; keep positions stable the same way.
      return `[${obj.map((v: unknown, i) => (v === undefined ? 'null' : encode(v, seen, `${at}[${i}]`))).join(',')}]`;
    }
    const entries = Object.keys(obj)
      .filter((k) => (obj as Record<string, unknown>)[k] !== undefined)
      .sort()
      .map((k) => `${JSON.stringify(k)}:${encode((obj as Record<string, unknown>)[k], seen, `${at}.${k}`)}`);
    return `{${entries.join(',')}}`;
  } finally {
    // Shared (non-cyclic) sub-objects are fine; only an object inside itself is a cycle.
    seen.delete(obj);
  }
}
