/** The AdapterError a promise rejects with (fails the test if it resolves or rejects otherwise). */
import { expect } from 'vitest';
import { AdapterError } from '../../src/adapters/types.js';

export async function rejection(p: Promise<unknown>): Promise<AdapterError> {
  const err = await p.then(
    () => null,
    (e: unknown) => e,
  );
  expect(err).toBeInstanceOf(AdapterError);
  return err as AdapterError;
}
