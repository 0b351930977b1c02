import { expect, it } from 'vitest';
import { within } from './wait.js';

it('within: a promise that does not settle fails with what, the scaled bound and the detail; one that does is passed through', async () => {
  await expect(within(new Promise(() => {}), 'the worker did not exit', 50, () => 'it printed: hi')).rejects.toThrow(/^the worker did not exit within \d+ ms \(time bounds ×[\d.]+[^)]*\)\nit printed: hi$/);
  expect(await within(Promise.resolve(3), 'never', 50)).toBe(3);
  await expect(within(Promise.reject(new Error('its own')), 'never', 50)).rejects.toThrow(/^its own$/);
});
