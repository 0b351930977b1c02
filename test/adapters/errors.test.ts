/** AdapterError: one closed set of codes, each with its kind, and one place where a kind becomes words. */
import { describe, expect, it } from 'vitest';
import { AdapterError, adapterErrorCode, hostFailureLead } from '../../src/adapters/types.js';

describe('AdapterError kinds', () => {
  it('merged codes keep one meaning each', () => {
    const kinds = (['timeout', 'not-found', 'cancelled', 'host-key', 'connection', 'in-use', 'exit'] as const).map((code) => new AdapterError('h', 'op', 'x', { code }).kind);
    expect(kinds).toEqual(['timeout', 'not-found', 'cancelled', 'auth', 'unreachable', 'conflict', 'platform']);
    expect(new AdapterError('h', 'op', 'x').kind).toBe('platform');
  });

  it('a code that arrives as data is kept only if Ferry knows it', () => {
    expect(adapterErrorCode('in-use', 'powershell')).toBe('in-use');
    expect(adapterErrorCode('Some-Other-Code', 'powershell')).toBe('powershell');
    expect(adapterErrorCode(null, 'powershell')).toBe('powershell');
    expect(adapterErrorCode('toString', 'powershell')).toBe('powershell');
  });

  it('a host that refused the login is not said to be silent', () => {
    expect(hostFailureLead('esx02', new AdapterError('esx02', 'describeHost', 'refused', { code: 'auth' }))).toBe("esx02 refused Ferry's login or its host key did not match");
    expect(hostFailureLead('hyp05', new AdapterError('hyp05', 'listVms', 'timed out', { code: 'unreachable' }))).toBe('hyp05 did not answer');
    expect(hostFailureLead('hyp05', new Error('socket hang up'))).toBe('hyp05 did not answer');
  });
});
